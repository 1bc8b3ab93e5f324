/* Dot product of an unpacked int8 vector with a packed row of qw-bit codes.
 * The switch on qw sits outside the loops so every inner loop extracts with
 * constant shifts.  It reads the mico_words(K,qw) words of the row whole;
 * the caller zero-extends a[] over the pad codes (K rounded up to a multiple
 * of 32 covers every qw), so they contribute nothing. */
#include "mico_kernels.h"

#define S2(c) ((int32_t)((c) ^ 2u) - 2)
#define S4(c) ((int32_t)((c) ^ 8u) - 8)
#define S8(c) ((int32_t)((c) ^ 128u) - 128)

int32_t mico_dot_i8_packed(const int8_t *a, const uint32_t *w, uint32_t K, int qw) {
    int32_t acc = 0;
    uint32_t j, i, nw;
    switch (qw) {
    case 1: {
        /* value 2c-1: dot = 2*sum(a where bit set) - sum(a) */
        int32_t sel = 0, all = 0;
        nw = mico_words(K, 1u);
        for (j = 0; j < nw; j++, a += 32) {
            uint32_t x = w[j];
            for (i = 0; i < 32; i++) {
                int32_t v = a[i];
                all += v;
                sel += v & -(int32_t)((x >> i) & 1u);
            }
        }
        acc = 2 * sel - all;
        break;
    }
    case 2:
        nw = mico_words(K, 2u);
        for (j = 0; j < nw; j++, a += 16) {
            uint32_t x = w[j];
            for (i = 0; i < 16; i++)
                acc += (int32_t)a[i] * S2((x >> (2u * i)) & 3u);
        }
        break;
    case 4:
        nw = mico_words(K, 4u);
        for (j = 0; j < nw; j++, a += 8) {
            uint32_t x = w[j];
            acc += (int32_t)a[0] * S4(x & 15u) + (int32_t)a[1] * S4((x >> 4) & 15u)
                 + (int32_t)a[2] * S4((x >> 8) & 15u) + (int32_t)a[3] * S4((x >> 12) & 15u)
                 + (int32_t)a[4] * S4((x >> 16) & 15u) + (int32_t)a[5] * S4((x >> 20) & 15u)
                 + (int32_t)a[6] * S4((x >> 24) & 15u) + (int32_t)a[7] * S4(x >> 28);
        }
        break;
    default: /* 8 */
        nw = mico_words(K, 8u);
        for (j = 0; j < nw; j++, a += 4) {
            uint32_t x = w[j];
            acc += (int32_t)a[0] * S8(x & 255u) + (int32_t)a[1] * S8((x >> 8) & 255u)
                 + (int32_t)a[2] * S8((x >> 16) & 255u) + (int32_t)a[3] * S8(x >> 24);
        }
        break;
    }
    return acc;
}
