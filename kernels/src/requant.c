/* Integer-only requantisation between layers (TFLite/CMSIS-NN style). */
#include "mico_kernels.h"

/* floor(t / 2^s) without relying on the implementation-defined >> of
 * negative signed values */
static inline int64_t asr64(int64_t t, uint32_t s) {
    return t >= 0 ? (t >> s) : ~((~t) >> s);
}

void mico_requant(const int32_t *acc, int8_t *out, uint32_t count,
                  uint32_t channels, uint32_t inner,
                  const int32_t *bias, const int32_t *mult, const uint8_t *shift,
                  int relu, int out_bits) {
    int32_t lo = -(1 << (out_bits - 1)), hi = (1 << (out_bits - 1)) - 1;
    uint32_t i, c = 0, j = 0;
    for (i = 0; i < count; i++) {
        int64_t v = (int64_t)acc[i] + bias[c];
        int32_t y;
        if (out_bits == 1) {
            y = v >= 0 ? 1 : -1;
        } else {
            uint32_t s = shift[c];
            int64_t t = v * mult[c];
            /* (t + 2^(s-1)) >> s, without the overflow of the addition */
            int64_t r = asr64(t, s) + (asr64(t, s - 1u) & 1);
            if (relu && r < 0)
                r = 0;
            if (r < lo)
                r = lo;
            if (r > hi)
                r = hi;
            y = (int32_t)r;
        }
        out[i] = (int8_t)y;
        if (++j == inner) {
            j = 0;
            if (++c == channels)
                c = 0;
        }
    }
}
