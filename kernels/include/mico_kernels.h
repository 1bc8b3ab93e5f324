/*
 * mico-hil kernel library: bit-packed mixed-precision kernels, portable C99.
 *
 * Numeric format (DESIGN.md section 3), shared by the NumPy reference
 * (kernels/reference.py), PyTorch fake-quant (mpq/) and every target:
 *   - bit-width b in {1,2,4,8}; code for b>=2 is two's complement in b bits,
 *     for b=1 code c in {0,1} means value 2c-1.
 *   - packing: a "row" of L codes is stored in mico_words(L,b) uint32 words,
 *     element i at bits [(i % (32/b))*b, +b) of word i / (32/b); pad bits are 0.
 *   - matmul: A is N rows of K (qa bits), W is M rows of K (qw bits),
 *     Y[n*M+m] = sum_k val(A[n,k]) * val(W[m,k])   (int32).
 *   - conv2d: logical NCHW input X[N][C][H][W] (qa bits), weights
 *     Wt[Ko][C/G][KS][KS] (qw bits), stride S, zero padding P (padding is the
 *     VALUE 0, also for 1-bit inputs), groups G; output Y[N][Ko][OH][OW] int32.
 *     Activation storage: each (n,c) plane of H*W codes is one packed row
 *     (mico_words(H*W,qa) words per plane).  Weights: each output channel's
 *     C/G*KS*KS codes in (c,kh,kw) order are one packed row.
 *
 * Nothing here allocates: callers pass scratch buffers; sizes have helpers
 * (mico_conv2d also keeps up to ~2.2 KiB on the stack: the lane-form weights
 * of a group of short patches, kernels/src/conv2d.c).
 * No float, no libc beyond what freestanding gcc provides (-lgcc is fine).
 *
 * How the kernels compute (kernels/src/rows.c, simd.c): each activation row
 * (or conv patch) is decoded once, by mico_act_decode only, into the form
 * its (qa, qw) pair's loop reads, and dotted with four weight rows at a time:
 * 8x8 with int8 loads, 1x1 with popcounts, every other pair with one 32-bit
 * multiply per two or four code pairs (values in lanes, rows.c explains).
 *
 * Choices where the contract was silent (kernels/src, kernels/reference.py):
 *   - scratch buffers must be 4-byte aligned (conv2d keeps packed words there);
 *   - mico_pack with b=1 maps values >= 0 to code 1 (+1) and values < 0 to
 *     code 0 (-1), like the 1-bit requant below; for b>=2 it keeps the low b
 *     bits of each value (values must already be in range);
 *   - accumulations are int32: results are exact while every partial sum fits
 *     in int32 (K * 2^(qa-1) * 2^(qw-1) < 2^31 for matmul);
 *   - pools need H >= KS and W >= KS (output (H-KS)/S+1 x (W-KS)/S+1);
 *   - requant rounding is computed without overflow as
 *     (t >> s) + ((t >> (s-1)) & 1), identical to (t + 2^(s-1)) >> s;
 *     out_bits values other than 1 clamp to the signed out_bits range.
 */
#ifndef MICO_KERNELS_H
#define MICO_KERNELS_H
#include <stdint.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

#define MICO_KERNELS_VERSION 1

/* number of 32-bit words holding L codes of b bits */
static inline uint32_t mico_words(uint32_t L, uint32_t b) {
    uint32_t per = 32u / b;
    return (L + per - 1u) / per;
}

/* 1 if b is one of {1,2,4,8} */
int mico_bits_ok(int b);

/* ---- building blocks shared by the kernels (additions to version 1) ------- */
/* number of set bits (portable SWAR, no builtins) */
uint32_t mico_popcount32(uint32_t x);
/* dot product of K int8 values a[] with a packed row w of K qw-bit codes;
 * reads the row's mico_words(K,qw) words whole, so a[] must hold that many
 * words' worth of entries (K rounded up to a multiple of 32 is enough for
 * every qw) and be 0 beyond K (so padding adds nothing, also for qw=1) */
int32_t mico_dot_i8_packed(const int8_t *a, const uint32_t *w, uint32_t K, int qw);
/* dot product of two packed rows of K codes with qa == qw == b in {1,2},
 * by popcounts on whole words (pad bits must be zero, as mico_pack makes them) */
int32_t mico_dot_packed_b1(const uint32_t *a, const uint32_t *w, uint32_t K);
/* 1-bit dot counting only the elements whose bit is set in mask row m
 * (nvalid = popcount of m): conv windows that touch the zero padding */
int32_t mico_dot_packed_b1_masked(const uint32_t *a, const uint32_t *m, const uint32_t *w,
                                  uint32_t K, uint32_t nvalid);
int32_t mico_dot_packed_b2(const uint32_t *a, const uint32_t *w, uint32_t K);

/* code i of a packed row of b-bit codes */
static inline uint32_t mico_code_at(const uint32_t *row, uint32_t i, int b) {
    uint32_t bit = i * (uint32_t)b;
    return (row[bit >> 5] >> (bit & 31u)) & ((2u << (b - 1)) - 1u);
}
/* value of an activation code of qa bits: the one place the kernels decode
 * activation codes (two's complement; qa = 1: code c is 2c-1) */
static inline int32_t mico_act_decode(uint32_t code, int qa) {
    uint32_t sb;
    if (qa == 1)
        return (int32_t)(code & 1u) * 2 - 1;
    sb = 1u << (qa - 1);
    return (int32_t)((code & (2u * sb - 1u)) ^ sb) - (int32_t)sb;
}

/* ---- one activation row against many weight rows (kernels/src/rows.c) ------
 * The inner loops of mico_matmul and mico_conv2d: an activation row of K codes
 * is prepared once, into the form the (qa, qw) pair's loop reads, then dotted
 * with any number of packed rows of K qw-bit weight codes. */
typedef struct {
    const uint32_t *words;  /* the prepared row (the caller's buffer, or the input itself) */
    int32_t corr;           /* pair-specific constant of the row (weight code offset) */
    uint32_t K;
    int qa, qw;
} mico_act_row;

/* bytes of buffer mico_act_prep_* may write for K codes (<= 2*K + 62) */
uint32_t mico_act_prep_bytes(uint32_t K, int qa, int qw);
/* prepare a packed row of K qa-bit codes; buf (4-byte aligned) holds the
 * result unless the pair reads the packed row as it is (8x8, 1x1) */
void mico_act_prep_packed(const uint32_t *a, uint32_t K, int qa, int qw, void *buf, mico_act_row *r);
/* prepare K int8 values (in range for qa bits; 0 also for qa = 1, as conv
 * padding, except for 1x1 which needs +-1); v must be 0 from K up to
 * mico_words(K,qw)*32/qw (the weight rows' codes).  8x8 reads v in place
 * (v 4-byte aligned).  v may lie inside buf from byte mico_words(K,qw)*32/qw
 * on (the prepared words never overtake the values still to be read). */
void mico_act_prep_i8(const int8_t *v, uint32_t K, int qa, int qw, void *buf, mico_act_row *r);
/* y[i*ystride] = dot(a, W + i*wstride) for i < count (wstride in words) */
void mico_dot_rows(const mico_act_row *a, const uint32_t *W, uint32_t wstride, uint32_t count,
                   int32_t *y, uint32_t ystride);

/* ---- packing ------------------------------------------------------------ */
/* pack L values (int8, already in range for b bits; for b=1 values are -1/+1)
 * into mico_words(L,b) words; pad bits are zero */
void mico_pack(const int8_t *vals, uint32_t L, int b, uint32_t *out);
/* unpack L codes of a packed row into int8 values (b=1 -> -1/+1) */
void mico_unpack(const uint32_t *in, uint32_t L, int b, int8_t *vals);

/* ---- matmul --------------------------------------------------------------- */
/* scratch bytes needed by mico_matmul for K: 2 * (K rounded up to a multiple
 * of 32), the largest prepared activation row of any pair (<= 2*K + 62) */
uint32_t mico_matmul_scratch(uint32_t K);
void mico_matmul(const uint32_t *A, const uint32_t *W, int32_t *Y,
                 uint32_t N, uint32_t M, uint32_t K, int qa, int qw,
                 void *scratch);

/* ---- conv2d --------------------------------------------------------------- */
typedef struct {
    uint32_t N, C, H, W;   /* input */
    uint32_t K;            /* output channels */
    uint32_t KS, S, P, G;  /* square kernel, stride, zero padding, groups */
} mico_conv_shape;

/* 0 if the shape is valid (C%G==0, K%G==0, output >= 1x1, all >=1) */
int mico_conv_check(const mico_conv_shape *s);
uint32_t mico_conv_out_h(const mico_conv_shape *s);
uint32_t mico_conv_out_w(const mico_conv_shape *s);
/* scratch bytes for any (qa,qw): 2 * (the (C/G)*KS*KS patch length rounded
 * up to a multiple of 32): the int8 patch and its prepared form (<= 2*L + 62) */
uint32_t mico_conv_scratch(const mico_conv_shape *s);
void mico_conv2d(const uint32_t *X, const uint32_t *Wt, int32_t *Y,
                 const mico_conv_shape *s, int qa, int qw, void *scratch);

#ifdef MICO_CFU
/* ---- SIMD kernels on the mico_simd_cfu custom instruction (kernels/src/simd.c,
 * kernels/include/mico_cfu.h; built only with MICO_CFU defined) -------------
 * Same arguments and bit-identical results as mico_matmul / mico_conv2d.
 * mico_matmul_simd uses mico_matmul_scratch(K) bytes of scratch (4-byte
 * aligned) for a copy of each activation row placed clear of the weight
 * rows' cache sets; with scratch NULL it reads the rows in place;
 * mico_conv2d_simd needs 4*max(words(L,qa), 2*words(L,1)) bytes for the patch
 * length L = C/G*KS*KS, which mico_conv_scratch(s) always covers. */
void mico_matmul_simd(const uint32_t *A, const uint32_t *W, int32_t *Y,
                      uint32_t N, uint32_t M, uint32_t K, int qa, int qw,
                      void *scratch);
void mico_conv2d_simd(const uint32_t *X, const uint32_t *Wt, int32_t *Y,
                      const mico_conv_shape *s, int qa, int qw, void *scratch);
#endif

/* ---- pooling on int8 values (NCHW, no padding, square window) --------------- */
/* max pool; avg pool rounds half up: floor((2*sum + cnt) / (2*cnt)) */
void mico_maxpool(const int8_t *X, int8_t *Y, uint32_t N, uint32_t C,
                  uint32_t H, uint32_t W, uint32_t KS, uint32_t S);
void mico_avgpool(const int8_t *X, int8_t *Y, uint32_t N, uint32_t C,
                  uint32_t H, uint32_t W, uint32_t KS, uint32_t S);

/* ---- requantisation --------------------------------------------------------- */
/* Per channel c (channel of element i is (i / inner) % channels):
 *   t = (int64)(acc[i] + bias[c]) * mult[c]          (mult > 0)
 *   y = (t + (1 << (shift[c]-1))) >> shift[c]         (arithmetic, shift in 1..62)
 *   if relu: y = max(y, 0)
 *   out_bits >= 2: y = clamp(y, -2^(b-1), 2^(b-1)-1)
 *   out_bits == 1: y = (acc[i] + bias[c] >= 0) ? +1 : -1   (relu ignored: a
 *                  ReLU feeding a 1-bit quantizer is dropped, as in binary nets)
 * acc + bias is computed in int64 (no int32 wrap).
 * count = total elements, inner = elements per channel run (H*W for NCHW
 * conv output, 1 for matmul output [N][M] with channels = M).
 */
void mico_requant(const int32_t *acc, int8_t *out, uint32_t count,
                  uint32_t channels, uint32_t inner,
                  const int32_t *bias, const int32_t *mult, const uint8_t *shift,
                  int relu, int out_bits);

/* ---- data generation and checksums (RUN_KERNEL) ------------------------------ */
/* xorshift32: x ^= x<<13; x ^= x>>17; x ^= x<<5; the state 0 is replaced by
 * 0x9E3779B9.  A code of b bits is the top b bits of the NEW state. */
uint32_t mico_xorshift32(uint32_t *state);
/* fill a packed tensor of `rows` rows of L codes each, codes in row-major
 * logical order, drawn from *state */
void mico_fill_random(uint32_t *state, uint32_t *out, uint32_t rows, uint32_t L, int b);
/* CRC-32 (IEEE 802.3, reflected, init/xorout 0xFFFFFFFF, as zlib.crc32) */
uint32_t mico_crc32(uint32_t crc, const void *data, size_t len);

#ifdef __cplusplus
}
#endif

/* ==== model-zoo kernels (appended; kernels/src/eltwise.c, layout.c, pool_ext.c, gconv.c) ====
 * They work on int8 VALUES (one code per byte, as the generated models keep
 * their activations), N = 1 image unless a shape says otherwise.
 * Exact semantics: docs/formats.md, section "Ops of the layer IR". */
#ifdef __cplusplus
extern "C" {
#endif

/* floor(t / 2^s) without the implementation-defined >> of negative values */
static inline int64_t mico_asr64(int64_t t, uint32_t s) {
    return t >= 0 ? (t >> s) : ~((~t) >> s);
}

/* The one rounding of every requantisation: (t + 2^(s-1)) >> s (arithmetic,
 * computed without overflowing the addition), then ReLU, then clamp to [lo, hi]. */
static inline int32_t mico_round_shift(int64_t t, uint32_t s, int relu, int32_t lo, int32_t hi) {
    int64_t r = mico_asr64(t, s) + (mico_asr64(t, s - 1u) & 1);
    if (relu && r < 0)
        r = 0;
    if (r < lo)
        r = lo;
    if (r > hi)
        r = hi;
    return (int32_t)r;
}

/* mico_requant with an extra upper clamp at the code `hi` (ReLU6: the code of
 * 6.0): y = min(requant(acc), hi); out_bits == 1 ignores hi (sign). */
void mico_requant_clip(const int32_t *acc, int8_t *out, uint32_t count,
                       uint32_t channels, uint32_t inner,
                       const int32_t *bias, const int32_t *mult, const uint8_t *shift,
                       int relu, int out_bits, int32_t hi);

/* Residual add / rescale of code tensors, n elements:
 *   t = (int64)x1[i] * m1 + (int64)x2[i] * m2      (x2 == NULL: t = x1[i] * m1)
 *   out_bits >= 2: y = clamp(relu((t + 2^(shift-1)) >> shift), lo_b, min(hi, hi_b))
 *   out_bits == 1: y = t >= 0 ? +1 : -1
 * (m1, m2 >= 0, shift in 1..62): requantisation with multiplier 1 of t. */
void mico_add(const int8_t *x1, const int8_t *x2, int8_t *y, uint32_t n, int32_t m1, int32_t m2,
              uint32_t shift, int relu, int out_bits, int32_t hi);

/* dst[i] = src[i] (concatenation of NCHW tensors along C is one copy per input) */
void mico_copy_i8(const int8_t *src, int8_t *dst, uint32_t n);
/* channel shuffle (ShuffleNet): Y[(k*G + g)*HW + p] = X[(g*(C/G) + k)*HW + p] */
void mico_channel_shuffle(const int8_t *X, int8_t *Y, uint32_t C, uint32_t HW, uint32_t G);
/* 1-D im2col of X[C][L]: Y[(c*KS + j)*OL + o] = X[c][o*S + j - P] (0 outside),
 * OL = (L + 2P - KS)/S + 1 -- a conv1d is this followed by a 1x1 conv2d */
void mico_unfold1d(const int8_t *X, int8_t *Y, uint32_t C, uint32_t L, uint32_t KS, uint32_t S, uint32_t P);

/* pooling with rectangular windows and zero padding (NCHW, N = 1):
 * OH = (H + 2PH - KH)/SH + 1, OW likewise; max ignores the padding (the window
 * is clipped to the image), avg counts it as value 0 and divides by KH*KW,
 * rounding half up: floor((2*sum + cnt) / (2*cnt)) */
typedef struct {
    uint32_t C, H, W;
    uint32_t KH, KW, SH, SW, PH, PW;
} mico_pool_shape;
void mico_maxpool_pad(const int8_t *X, int8_t *Y, const mico_pool_shape *s);
void mico_avgpool_pad(const int8_t *X, int8_t *Y, const mico_pool_shape *s);
/* adaptive average pooling to OH x OW (global: 1 x 1); window i spans
 * [floor(i*H/OH), ceil((i+1)*H/OH)) (as torch), mean rounded half up */
void mico_adaptive_avgpool(const int8_t *X, int8_t *Y, uint32_t C, uint32_t H, uint32_t W,
                           uint32_t OH, uint32_t OW);

/* Grouped / depthwise conv2d on int8 activation VALUES (not packed) with
 * packed qw-bit weights (one row of C/G*KS*KS codes per output channel, as
 * mico_conv2d): same result as mico_conv2d on the packed input.  A direct
 * loop: fast where the reduction per group is short (depthwise). */
uint32_t mico_gconv_scratch(const mico_conv_shape *s);
void mico_gconv2d(const int8_t *X, const uint32_t *Wt, int32_t *Y, const mico_conv_shape *s,
                  int qw, void *scratch);

#ifdef __cplusplus
}
#endif
#endif
