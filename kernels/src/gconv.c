/* Grouped and depthwise conv2d on int8 activation values (direct loops).
 *
 * mico_conv2d gathers a packed patch per output pixel and dots it with each
 * weight row of the group: for depthwise layers (one input channel per group)
 * that is a 9-element patch decoded from packed words per output, after
 * packing the input planes.  Here the activations stay int8 values (no
 * packing) and each output channel's weight row is unpacked once:
 *   - one input channel per group (depthwise): the plane is copied into a
 *     zero-padded scratch plane, then every output is a straight window sum
 *     (3x3: unrolled with the nine weights in registers), no bounds tests;
 *   - several input channels per group: each tap (c, kh, kw) adds
 *     w * (shifted input row) to the output rows it reaches (an axpy per row,
 *     its column range clipped once), so no per-output window bookkeeping. */
#include "mico_kernels.h"

static uint32_t padded_plane(const mico_conv_shape *s) {
    return (s->H + 2u * s->P) * (s->W + 2u * s->P);
}

uint32_t mico_gconv_scratch(const mico_conv_shape *s) {
    uint32_t L = s->C / s->G * s->KS * s->KS;
    return ((L + 3u) & ~3u) + ((padded_plane(s) + 3u) & ~3u);
}

/* the input plane x inside a zero border of P */
static void pad_plane(const int8_t *x, int8_t *pad, const mico_conv_shape *s) {
    uint32_t P = s->P, W = s->W, H = s->H, WP = W + 2u * P, i, j;
    for (i = 0; i < padded_plane(s); i++)
        pad[i] = 0;
    for (i = 0; i < H; i++)
        for (j = 0; j < W; j++)
            pad[(i + P) * WP + P + j] = x[i * W + j];
}

/* one input channel, already padded: unclipped windows */
static void depthwise(const int8_t *pad, const int8_t *wk, int32_t *y, const mico_conv_shape *s,
                      uint32_t OH, uint32_t OW) {
    uint32_t KS = s->KS, S = s->S, WP = s->W + 2u * s->P, oh, ow, kh, kw;
    if (KS == 3u) {
        const int32_t w0 = wk[0], w1 = wk[1], w2 = wk[2], w3 = wk[3], w4 = wk[4];
        const int32_t w5 = wk[5], w6 = wk[6], w7 = wk[7], w8 = wk[8];
        for (oh = 0; oh < OH; oh++) {
            const int8_t *r0 = pad + oh * S * WP, *r1 = r0 + WP, *r2 = r1 + WP;
            for (ow = 0; ow < OW; ow++, r0 += S, r1 += S, r2 += S)
                *y++ = r0[0] * w0 + r0[1] * w1 + r0[2] * w2 + r1[0] * w3 + r1[1] * w4 + r1[2] * w5
                     + r2[0] * w6 + r2[1] * w7 + r2[2] * w8;
        }
        return;
    }
    for (oh = 0; oh < OH; oh++) {
        for (ow = 0; ow < OW; ow++) {
            const int8_t *r = pad + oh * S * WP + ow * S, *w = wk;
            int32_t acc = 0;
            for (kh = 0; kh < KS; kh++, r += WP, w += KS)
                for (kw = 0; kw < KS; kw++)
                    acc += (int32_t)r[kw] * w[kw];
            *y++ = acc;
        }
    }
}

/* first output index o with o*S + k - P >= 0, and the end of those with o*S + k - P < n */
static void reach(uint32_t k, uint32_t S, uint32_t P, uint32_t n, uint32_t out, uint32_t *o0, uint32_t *o1) {
    uint32_t a = k >= P ? 0u : (P - k + S - 1u) / S;
    uint32_t b = n + P > k ? (n + P - k - 1u) / S + 1u : 0u;
    *o0 = a;
    *o1 = b < out ? b : out;
}

/* several input channels: one axpy per (tap, output row) */
static void grouped(const int8_t *Xg, const int8_t *wk, int32_t *y, const mico_conv_shape *s, uint32_t Cg,
                    uint32_t OH, uint32_t OW) {
    uint32_t KS = s->KS, S = s->S, P = s->P, H = s->H, W = s->W;
    uint32_t c, kh, kw, oh, ow, oh0, oh1, ow0, ow1;
    for (oh = 0; oh < OH * OW; oh++)
        y[oh] = 0;
    for (c = 0; c < Cg; c++) {
        const int8_t *xc = Xg + c * H * W;
        for (kh = 0; kh < KS; kh++) {
            reach(kh, S, P, H, OH, &oh0, &oh1);
            for (kw = 0; kw < KS; kw++) {
                int32_t w = *wk++;
                if (!w)
                    continue;
                reach(kw, S, P, W, OW, &ow0, &ow1);
                for (oh = oh0; oh < oh1; oh++) {
                    const int8_t *x = xc + (oh * S + kh - P) * W + (ow0 * S + kw - P);
                    int32_t *yr = y + oh * OW;
                    if (S == 1u)
                        for (ow = ow0; ow < ow1; ow++)
                            yr[ow] += w * *x++;
                    else
                        for (ow = ow0; ow < ow1; ow++, x += S)
                            yr[ow] += w * *x;
                }
            }
        }
    }
}

void mico_gconv2d(const int8_t *X, const uint32_t *Wt, int32_t *Y, const mico_conv_shape *s,
                  int qw, void *scratch) {
    uint32_t OH = mico_conv_out_h(s), OW = mico_conv_out_w(s);
    uint32_t G = s->G, Cg = s->C / G, Kg = s->K / G, KS = s->KS;
    uint32_t L = Cg * KS * KS, wpr = mico_words(L, (uint32_t)qw);
    uint32_t HW = s->H * s->W, n, k;
    int8_t *wk = (int8_t *)scratch;
    int8_t *pad = wk + ((L + 3u) & ~3u);
    for (n = 0; n < s->N; n++) {
        for (k = 0; k < s->K; k++) {
            const int8_t *Xg = X + (n * s->C + (k / Kg) * Cg) * HW;
            int32_t *y = Y + (n * s->K + k) * OH * OW;
            mico_unpack(Wt + k * wpr, L, qw, wk);
            if (Cg == 1u) {
                if (k % Kg == 0)                 /* once per input channel */
                    pad_plane(Xg, pad, s);
                depthwise(pad, wk, y, s, OH, OW);
            } else
                grouped(Xg, wk, y, s, Cg, OH, OW);
        }
    }
}
