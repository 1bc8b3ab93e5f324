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
#define DEFINE_GATHER(NAME, LB)                                                   \
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
                    *p++ = (int8_t)mico_act_decode(c, 1 << (LB));                 \
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

/* ---- short patches (stems: few input channels) -----------------------------
 * With L <= STEM_L codes per patch, the per-row costs of rows.c (one
 * prepared activation row against packed weight rows) outweigh its work, so
 * the roles turn round: each weight row of the group is prepared ONCE per
 * call, its values in reversed lanes (lane LANES-1-i of word j holds
 * w[LANES*j + i]), and per pixel the patch is spread into lanes the other
 * way round as unsigned u = a + oa (oa = 2^(qa-1), or 1 for qa = 1, so that
 * the padding value 0 is u = oa too), shared by every row.  One multiply
 * then sums LANES products in its top lane (the lane trick of rows.c):
 *     dot = sum u*w - oa*sum(w).
 * Lanes of 8 bits (4 per word) where all of a row's products fit in
 * [-128, 127] (F words of them, F >= the row's words), else of 16 bits
 * (2 per word), where every pair fits a row of <= STEM_L codes (8x4 and 4x8:
 * F = 8 words). */
#define STEM_L 16u                      /* patch lengths that take this path */
#define STEM_WORDS 256u                 /* prepared weight words (local buffer) */
#define STEM_UMAX(qa) ((qa) == 1 ? 2 : (1 << (qa)) - 1)
#define STEM_VNEG(qw) ((qw) == 1 ? 1 : 1 << ((qw) - 1))
#define STEM_VPOS(qw) ((qw) == 1 ? 1 : (1 << ((qw) - 1)) - 1)
#define STEM_F(qa, qw, lanes, half)                                                     \
    (((half) / ((lanes) * STEM_UMAX(qa) * STEM_VNEG(qw))) <                             \
             (((half) - 1) / ((lanes) * STEM_UMAX(qa) * STEM_VPOS(qw)))                 \
         ? ((half) / ((lanes) * STEM_UMAX(qa) * STEM_VNEG(qw)))                         \
         : (((half) - 1) / ((lanes) * STEM_UMAX(qa) * STEM_VPOS(qw))))

typedef struct {
    uint32_t lanes, nx;         /* lanes per word, words per row */
    int32_t oa;                 /* activation offset */
    uint32_t w[STEM_WORDS];     /* the prepared rows, nx words each */
    int32_t wsum[STEM_WORDS];   /* per row: sum of its values */
} stem_weights;

/* the lanes of a pair for L codes: 4 when a row's products fit 8-bit lanes,
 * else 2; 0 when not even 16-bit lanes hold a row without a flush */
static uint32_t stem_lanes(uint32_t L, int qa, int qw) {
    if ((uint32_t)STEM_F(qa, qw, 4, 128) >= (L + 3u) / 4u)
        return 4u;
    return (uint32_t)STEM_F(qa, qw, 2, 32768) >= (L + 1u) / 2u ? 2u : 0u;
}

static int stem_fits(const mico_conv_shape *s, int qa, int qw) {
    uint32_t L = s->C / s->G * s->KS * s->KS;
    return !(qa == 8 && qw == 8) && L <= STEM_L && (s->K / s->G) * ((L + 1u) / 2u) <= STEM_WORDS &&
           stem_lanes(L, qa, qw) != 0u;
}

static void stem_prepare(stem_weights *sw, const uint32_t *Wg, uint32_t wpr, uint32_t Kg,
                         uint32_t L, int qa, int qw) {
    int8_t v[STEM_L + 3u];
    uint32_t r, j, i;
    sw->lanes = stem_lanes(L, qa, qw);
    sw->nx = (L + sw->lanes - 1u) / sw->lanes;
    sw->oa = qa == 1 ? 1 : 1 << (qa - 1);
    for (r = 0; r < Kg; r++, Wg += wpr) {
        int32_t sum = 0;
        mico_unpack(Wg, L, qw, v);
        for (i = L; i < sw->nx * sw->lanes; i++)
            v[i] = 0;
        for (i = 0; i < L; i++)
            sum += v[i];
        for (j = 0; j < sw->nx; j++) {
            uint32_t wd = 0, lw = 32u / sw->lanes;
            for (i = 0; i < sw->lanes; i++)
                wd += (uint32_t)(int32_t)v[sw->lanes * j + i] << lw * (sw->lanes - 1u - i);
            sw->w[r * sw->nx + j] = wd;
        }
        sw->wsum[r] = sum;
    }
}

/* y[r*ystride] for the Kg rows, from the int8 patch (0 from L to nx*lanes):
 * the patch words once, then per row NX multiplies and one flush (a row's
 * products fit its lanes: stem_lanes) */
#define STEM_ROWS(LANES, NX)                                                           \
    {                                                                                  \
        const uint32_t lw = 32u / (LANES), S = 32u - lw;                               \
        const uint32_t pinit = 0x80000000u | (1u << (S - 1u));                         \
        uint32_t x[NX], j, i;                                                          \
        for (j = 0; j < (NX); j++) {                                                   \
            uint32_t xd = 0;                                                           \
            for (i = 0; i < (LANES); i++)                                              \
                xd += (uint32_t)(patch[(LANES) * j + i] + sw->oa) << lw * i;           \
            x[j] = xd;                                                                 \
        }                                                                              \
        for (r = 0; r < Kg; r++, y += ystride, w += (NX)) {                            \
            uint32_t P = pinit;                                                        \
            for (j = 0; j < (NX); j++)                                                 \
                P += w[j] * x[j];                                                      \
            *y = (int32_t)(P >> S) - (int32_t)(1u << (lw - 1u)) - sw->oa * sw->wsum[r]; \
        }                                                                              \
        return;                                                                        \
    }

static void stem_rows(const stem_weights *sw, const int8_t *patch, uint32_t Kg,
                      int32_t *y, uint32_t ystride) {
    const uint32_t *w = sw->w;
    uint32_t r;
    switch (sw->lanes * 16u + sw->nx) {
    case 0x41: STEM_ROWS(4u, 1u)
    case 0x42: STEM_ROWS(4u, 2u)
    case 0x43: STEM_ROWS(4u, 3u)
    case 0x44: STEM_ROWS(4u, 4u)
    case 0x21: STEM_ROWS(2u, 1u)
    case 0x22: STEM_ROWS(2u, 2u)
    case 0x23: STEM_ROWS(2u, 3u)
    case 0x24: STEM_ROWS(2u, 4u)
    case 0x25: STEM_ROWS(2u, 5u)
    case 0x26: STEM_ROWS(2u, 6u)
    case 0x27: STEM_ROWS(2u, 7u)
    default: STEM_ROWS(2u, 8u)
    }
}

typedef int (*gather_fn)(const uint32_t *, uint32_t, uint32_t,
                         const mico_conv_shape *, uint32_t, uint32_t, int8_t *);

void mico_conv2d(const uint32_t *X, const uint32_t *Wt, int32_t *Y,
                 const mico_conv_shape *s, int qa, int qw, void *scratch) {
    uint32_t OH = mico_conv_out_h(s), OW = mico_conv_out_w(s);
    uint32_t G = s->G, Cg = s->C / G, Kg = s->K / G;
    uint32_t L = patch_len(s), Lp = (L + 31u) & ~31u;
    uint32_t wpp = mico_words(s->H * s->W, (uint32_t)qa);  /* words per plane */
    uint32_t wpr = mico_words(L, (uint32_t)qw);            /* words per weight row */
    uint32_t Lw = wpr * (32u / (uint32_t)qw);               /* codes per weight row */
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
    /* short patches: the stem path (above), its weights in a local buffer */
    stem_weights stem;
    int use_stem = stem_fits(s, qa, qw);

    for (n = 0; n < s->N; n++) {
        for (g = 0; g < G; g++) {
            const uint32_t *Xg = X + (n * s->C + g * Cg) * wpp;
            const uint32_t *Wg = Wt + g * Kg * wpr;
            int32_t *Yg = Y + (n * s->K + g * Kg) * plane;
            if (use_stem)
                stem_prepare(&stem, Wg, wpr, Kg, L, qa, qw);
            for (oh = 0; oh < OH; oh++) {
                for (ow = 0; ow < OW; ow++) {
                    int32_t *y = Yg + oh * OW + ow;
                    int padded = gather(Xg, wpp, Cg, s, oh, ow, patch);
                    if (use_stem) {
                        for (k = L; k < stem.nx * stem.lanes; k++)
                            patch[k] = 0;
                        stem_rows(&stem, patch, Kg, y, plane);
                    } else if (qa == 1 && qw == 1 && padded) {
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
                        /* the codes up to the weight rows' word end read 0; the
                         * last pixel's prepared words may have overwritten them */
                        for (k = L; k < Lw; k++)
                            patch[k] = 0;
                        mico_act_prep_i8(patch, L, qa, qw, prepared, &row);
                        mico_dot_rows(&row, Wg, wpr, Kg, y, plane);
                    }
                }
            }
        }
    }
}
