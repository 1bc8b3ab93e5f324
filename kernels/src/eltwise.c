/* Element-wise ops of code tensors: residual add (and the one-input rescale),
 * the requantisation with an upper clamp (ReLU6), copies.  Every rounding is
 * mico_round_shift, the rounding of mico_requant. */
#include "mico_kernels.h"

static inline void out_range(int out_bits, int32_t hi, int32_t *lo_out, int32_t *hi_out) {
    int32_t lo = -(1 << (out_bits - 1)), top = (1 << (out_bits - 1)) - 1;
    *lo_out = lo;
    *hi_out = hi < top ? hi : top;
}

void mico_requant_clip(const int32_t *acc, int8_t *out, uint32_t count,
                       uint32_t channels, uint32_t inner,
                       const int32_t *bias, const int32_t *mult, const uint8_t *shift,
                       int relu, int out_bits, int32_t hi) {
    int32_t lo, top;
    uint32_t i, c = 0, j = 0;
    out_range(out_bits, hi, &lo, &top);
    for (i = 0; i < count; i++) {
        int64_t v = (int64_t)acc[i] + bias[c];
        if (out_bits == 1)
            out[i] = (int8_t)(v >= 0 ? 1 : -1);
        else
            out[i] = (int8_t)mico_round_shift(v * mult[c], shift[c], relu, lo, top);
        if (++j == inner) {
            j = 0;
            if (++c == channels)
                c = 0;
        }
    }
}

void mico_add(const int8_t *x1, const int8_t *x2, int8_t *y, uint32_t n, int32_t m1, int32_t m2,
              uint32_t shift, int relu, int out_bits, int32_t hi) {
    int32_t lo, top;
    uint32_t i;
    out_range(out_bits, hi, &lo, &top);
    for (i = 0; i < n; i++) {
        int64_t t = (int64_t)x1[i] * m1;
        if (x2)
            t += (int64_t)x2[i] * m2;
        if (out_bits == 1)
            y[i] = (int8_t)(t >= 0 ? 1 : -1);
        else
            y[i] = (int8_t)mico_round_shift(t, shift, relu, lo, top);
    }
}

void mico_copy_i8(const int8_t *src, int8_t *dst, uint32_t n) {
    uint32_t i;
    for (i = 0; i < n; i++)
        dst[i] = src[i];
}
