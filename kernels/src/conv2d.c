/* Bit-packed mixed-precision conv2d (NCHW, square kernel, stride, zero
 * padding, groups).  Per (n, group, output pixel) the input patch is gathered
 * once into int8 scratch in the weights' (c,kh,kw) order (padding = value 0),
 * prepared for the pair's loop and dotted with every weight row of the group
 * (kernels/src/rows.c). */
#include "mico_kernels.h"

int mico_conv_check(const mico_conv_shape *s) {
    if (!s)
        return -1;
    if (!s->N || !s->C || !s->H || !s->W || !s->K || !s->KS || !s->S || !s->G)
        return -1;
    if (s->C % s->G || s->K % s->G)
        return -1;
    if (s->H + 2u * s->P < s->KS || s->W + 2u * s->P < s->KS)
        return -1;
    return 0;
}

uint32_t mico_conv_out_h(const mico_conv_shape *s) {
    return (s->H + 2u * s->P - s->KS) / s->S + 1u;
}

uint32_t mico_conv_out_w(const mico_conv_shape *s) {
    return (s->W + 2u * s->P - s->KS) / s->S + 1u;
}

static uint32_t patch_len(const mico_conv_shape *s) {
    return s->C / s->G * s->KS * s->KS;
}

/* the prepared row (at most 2 bytes per code, mico_act_prep_bytes) in the
 * first Lp bytes, the int8 patch in the next Lp, Lp = L rounded up to 32:
 * the preparation may overwrite the patch behind its reads (rows.c) */
uint32_t mico_conv_scratch(const mico_conv_shape *s) {
    return 2u * ((patch_len(s) + 31u) & ~31u);
}

/* gather the patch of output pixel (oh, ow) from Cg planes starting at X
 * (plane stride wpp words); returns 1 if any element came from padding */
#define DEFINE_GATHER(NAME, LB)                                          \
static int NAME(const uint32_t *X, uint32_t wpp, uint32_t Cg,                     \
                const mico_conv_shape *s, uint32_t oh, uint32_t ow, int8_t *p) { \
    const uint32_t per_shift = 5u - (LB), mask_i = (1u << per_shift) - 1u;        \
    const uint32_t bits = 1u << (LB), cmask = (1u << bits) - 1u;                  \
    uint32_t cc, kh, kw, KS = s->KS, H = s->H, W = s->W;                          \
    int32_t ih0 = (int32_t)(oh * s->S) - (int32_t)s->P;                           \
    int32_t iw0 = (int32_t)(ow * s->S) - (int32_t)s->P;                           \
    int padded = 0;                                                               \
    for (cc = 0; cc < Cg; cc++, X += wpp) {                                       \
        for (kh = 0; kh < KS; kh++) {                                             \
            int32_t ih = ih0 + (int32_t)kh;                                       \
            if (ih < 0 || ih >= (int32_t)H) {                                     \
                for (kw = 0; kw < KS; kw++)                                       \
                    *p++ = 0;                                                     \
                padded = 1;                                                       \
                continue;                                                         \
            }                                                                     \
            for (kw = 0; kw < KS; kw++) {                                         \
                int32_t iw = iw0 + (int32_t)kw;                                   \
                if (iw < 0 || iw >= (int32_t)W) {                                 \
                    *p++ = 0;                                                     \
                    padded = 1;                                                   \
                } else {                                                          \
                    uint32_t i = (uint32_t)ih * W + (uint32_t)iw;                 \
                    uint32_t c = (X[i >> per_shift] >> ((i & mask_i) * bits)) & cmask; \
                    *p++ = (int8_t)mico_act_decode(c, 1 << (LB));                                   \
                }                                                                 \
            }                                                                     \
        }                                                                         \
    }                                                                             \
    return padded;                                                                \
}

DEFINE_GATHER(gather_b1, 0u)
DEFINE_GATHER(gather_b2, 1u)
DEFINE_GATHER(gather_b4, 2u)
DEFINE_GATHER(gather_b8, 3u)

typedef int (*gather_fn)(const uint32_t *, uint32_t, uint32_t,
                         const mico_conv_shape *, uint32_t, uint32_t, int8_t *);

void mico_conv2d(const uint32_t *X, const uint32_t *Wt, int32_t *Y,
                 const mico_conv_shape *s, int qa, int qw, void *scratch) {
    uint32_t OH = mico_conv_out_h(s), OW = mico_conv_out_w(s);
    uint32_t G = s->G, Cg = s->C / G, Kg = s->K / G;
    uint32_t L = patch_len(s), Lp = (L + 31u) & ~31u;
    uint32_t wpp = mico_words(s->H * s->W, (uint32_t)qa);  /* words per plane */
    uint32_t wpr = mico_words(L, (uint32_t)qw);            /* words per weight row */
    uint32_t plane = OH * OW;
    uint32_t *prepared = (uint32_t *)scratch;
    int8_t *patch = (int8_t *)scratch + Lp;
    gather_fn gather;
    uint32_t n, g, oh, ow, kk, k;
    mico_act_row row;

    switch (qa) {
    case 1: gather = gather_b1; break;
    case 2: gather = gather_b2; break;
    case 4: gather = gather_b4; break;
    default: gather = gather_b8; break;
    }
    for (k = L; k < Lp; k++)
        patch[k] = 0;

    for (n = 0; n < s->N; n++) {
        for (g = 0; g < G; g++) {
            const uint32_t *Xg = X + (n * s->C + g * Cg) * wpp;
            const uint32_t *Wg = Wt + g * Kg * wpr;
            int32_t *Yg = Y + (n * s->K + g * Kg) * plane;
            for (oh = 0; oh < OH; oh++) {
                for (ow = 0; ow < OW; ow++) {
                    int32_t *y = Yg + oh * OW + ow;
                    int padded = gather(Xg, wpp, Cg, s, oh, ow, patch);
                    if (qa == 1 && qw == 1 && padded) {
                        /* 1x1 cannot code the padding value 0: the signs and a
                         * mask of the real elements, popcounts on both */
                        uint32_t nw1 = mico_words(L, 1u), *mask = prepared + nw1, nvalid = 0, i;
                        const uint32_t *w = Wg;
                        for (i = 0; i < nw1; i++)
                            prepared[i] = mask[i] = 0;
                        for (i = 0; i < L; i++) {
                            if (patch[i]) {
                                mask[i >> 5] |= 1u << (i & 31u);
                                nvalid++;
                                if (patch[i] > 0)
                                    prepared[i >> 5] |= 1u << (i & 31u);
                            }
                        }
                        for (kk = 0; kk < Kg; kk++, w += wpr, y += plane)
                            *y = mico_dot_packed_b1_masked(prepared, mask, w, L, nvalid);
                    } else {
                        mico_act_prep_i8(patch, L, qa, qw, prepared, &row);
                        mico_dot_rows(&row, Wg, wpr, Kg, y, plane);
                    }
                }
            }
        }
    }
}
