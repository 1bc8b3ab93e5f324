/* Max and average pooling on int8 values (NCHW, square window, no padding). */
#include "mico_kernels.h"

void mico_maxpool(const int8_t *X, int8_t *Y, uint32_t N, uint32_t C,
                  uint32_t H, uint32_t W, uint32_t KS, uint32_t S) {
    uint32_t OH = (H - KS) / S + 1u, OW = (W - KS) / S + 1u;
    uint32_t p, oh, ow, kh, kw;
    for (p = 0; p < N * C; p++, X += H * W) {
        for (oh = 0; oh < OH; oh++) {
            for (ow = 0; ow < OW; ow++) {
                const int8_t *x = X + oh * S * W + ow * S;
                int8_t m = x[0];
                for (kh = 0; kh < KS; kh++, x += W)
                    for (kw = 0; kw < KS; kw++)
                        if (x[kw] > m)
                            m = x[kw];
                *Y++ = m;
            }
        }
    }
}

/* floor(num / den) for den > 0 (C division truncates toward zero) */
static inline int32_t floor_div(int32_t num, int32_t den) {
    int32_t q = num / den;
    if (num % den != 0 && num < 0)
        q -= 1;
    return q;
}

void mico_avgpool(const int8_t *X, int8_t *Y, uint32_t N, uint32_t C,
                  uint32_t H, uint32_t W, uint32_t KS, uint32_t S) {
    uint32_t OH = (H - KS) / S + 1u, OW = (W - KS) / S + 1u;
    int32_t cnt = (int32_t)(KS * KS);
    uint32_t p, oh, ow, kh, kw;
    for (p = 0; p < N * C; p++, X += H * W) {
        for (oh = 0; oh < OH; oh++) {
            for (ow = 0; ow < OW; ow++) {
                const int8_t *x = X + oh * S * W + ow * S;
                int32_t sum = 0;
                for (kh = 0; kh < KS; kh++, x += W)
                    for (kw = 0; kw < KS; kw++)
                        sum += x[kw];
                /* round half up; the mean of int8 values stays in int8 */
                *Y++ = (int8_t)floor_div(2 * sum + cnt, 2 * cnt);
            }
        }
    }
}
