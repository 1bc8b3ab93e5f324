/* Pooling beyond pool.c: rectangular windows with zero padding, and adaptive
 * (global) average pooling.  Averages round half up, as mico_avgpool. */
#include "mico_kernels.h"

/* floor(num / den) for den > 0 */
static inline int32_t floor_div_pos(int32_t num, int32_t den) {
    int32_t q = num / den;
    if (num % den != 0 && num < 0)
        q -= 1;
    return q;
}

/* clip [i*S - P, i*S - P + K) to [0, n): first index and count */
static inline void span(uint32_t i, uint32_t S, uint32_t P, uint32_t K, uint32_t n, uint32_t *a, uint32_t *b) {
    int32_t s = (int32_t)(i * S) - (int32_t)P, e = s + (int32_t)K;
    if (s < 0)
        s = 0;
    if (e > (int32_t)n)
        e = (int32_t)n;
    *a = (uint32_t)s;
    *b = e > s ? (uint32_t)e : (uint32_t)s;
}

static void pool_pad(const int8_t *X, int8_t *Y, const mico_pool_shape *s, int avg) {
    uint32_t OH = (s->H + 2u * s->PH - s->KH) / s->SH + 1u;
    uint32_t OW = (s->W + 2u * s->PW - s->KW) / s->SW + 1u;
    int32_t cnt = (int32_t)(s->KH * s->KW);
    uint32_t c, oh, ow, h, w, h0, h1, w0, w1;
    for (c = 0; c < s->C; c++, X += s->H * s->W) {
        for (oh = 0; oh < OH; oh++) {
            span(oh, s->SH, s->PH, s->KH, s->H, &h0, &h1);
            for (ow = 0; ow < OW; ow++) {
                span(ow, s->SW, s->PW, s->KW, s->W, &w0, &w1);
                if (avg) {
                    int32_t sum = 0;
                    for (h = h0; h < h1; h++)
                        for (w = w0; w < w1; w++)
                            sum += X[h * s->W + w];
                    *Y++ = (int8_t)floor_div_pos(2 * sum + cnt, 2 * cnt);
                } else {
                    int32_t m = -128;
                    for (h = h0; h < h1; h++)
                        for (w = w0; w < w1; w++)
                            if (X[h * s->W + w] > m)
                                m = X[h * s->W + w];
                    *Y++ = (int8_t)m;
                }
            }
        }
    }
}

void mico_maxpool_pad(const int8_t *X, int8_t *Y, const mico_pool_shape *s) { pool_pad(X, Y, s, 0); }
void mico_avgpool_pad(const int8_t *X, int8_t *Y, const mico_pool_shape *s) { pool_pad(X, Y, s, 1); }

void mico_adaptive_avgpool(const int8_t *X, int8_t *Y, uint32_t C, uint32_t H, uint32_t W,
                           uint32_t OH, uint32_t OW) {
    uint32_t c, i, j, h, w;
    for (c = 0; c < C; c++, X += H * W) {
        for (i = 0; i < OH; i++) {
            uint32_t h0 = i * H / OH, h1 = ((i + 1u) * H + OH - 1u) / OH;
            for (j = 0; j < OW; j++) {
                uint32_t w0 = j * W / OW, w1 = ((j + 1u) * W + OW - 1u) / OW;
                int32_t cnt = (int32_t)((h1 - h0) * (w1 - w0)), sum = 0;
                for (h = h0; h < h1; h++)
                    for (w = w0; w < w1; w++)
                        sum += X[h * W + w];
                *Y++ = (int8_t)floor_div_pos(2 * sum + cnt, 2 * cnt);
            }
        }
    }
}
