/* SIMD versions of mico_matmul / mico_conv2d on the MiCo-style mixed-
 * precision CFU (rtl_sims/cfu/mico_simd_cfu.v, kernels/include/mico_cfu.h).
 * Same signatures and bit-exact results as the scalar kernels.  The whole
 * file is empty unless MICO_CFU is defined (rv32 firmware for a core with the
 * unit; host tests add MICO_CFU_EMULATE for the C model of the instruction).
 *
 * A dot product of two packed rows of K codes is one CFU op per word of the
 * wider operand: qa == qw pairs word j of A with word j of W; qa != qw pairs
 * wide word k with segment k % R of narrow word k / R (R = wide / narrow), so
 * each narrow word is loaded once and used by R ops.  Zero pad bits make
 * every padding lane contribute 0, except for 1x1 where both sides are -1:
 * the kernels subtract the number of pad lanes.
 *
 * Per pair (qa, qw) everything is specialised by macros (funct3 / funct7 are
 * immediates of the instruction).  The main loop takes blocks of U = 8 wide
 * words in this order: all loads (activation words first, then weight
 * words), the two pointer increments, the 8 CFU ops, the adds, the branch.
 * The order matters on VexRiscv: a CFU op waits in execute while a load /
 * store / branch is in memory or write-back, so a CFU op right after a load
 * costs two stall cycles (the volatile asm in mico_cfu.h keeps gcc from
 * interleaving); and with a direct-mapped D-cache an activation line and a
 * weight line in the same set cost 2 misses per block instead of 2 per word.
 * Per block: 16 loads (qa == qw) or 8 + 8/R (qa != qw), 2 addi, 8 CFU ops,
 * 8 adds, 1 branch: 35 / 31 / 29 / 28 instructions for R = 1 / 2 / 4 / 8.
 * The last nwide % 8 wide words take one step each (loads, CFU op, add).
 *
 * That loop serves the last M % 4 weight rows; the rest go four at a time
 * (DEFINE_DOT4): per block the activation words once, then per wide word the
 * four rows' weight words, the previous word's four adds (which keep the CFU
 * ops two instructions clear of the loads), four CFU ops: SA + 4*SW loads,
 * 32 CFU ops, 32 adds, 5 addi, 1 branch for 32 row-words.  matmul copies each
 * activation row into its scratch where no weight row shares its cache sets
 * (when the weights stream through the cache).
 *
 * conv2d gathers each output pixel's patch (C/G*KS*KS codes in (c,kh,kw)
 * order, padding = value 0 = code 0 for qa >= 2) packed at qa bits into
 * scratch, one run of codes per window row (moved up to 32 bits at a time),
 * and runs the per-pair row loop over the group's output channels.
 * qa == 1 cannot encode 0: a window touching the padding is evaluated exactly
 * as (dot(p-, w) + dot(p+, w)) / 2, p-/p+ being the patch with -1/+1 at the
 * padded positions.  Scratch: 4*max(words(L,qa), 2*words(L,1)) bytes for the
 * patch length L, never more than mico_conv_scratch() (4-byte aligned).
 */
#include "mico_kernels.h"

#ifndef MICO_CFU
typedef int mico_simd_needs_mico_cfu; /* ISO C forbids an empty translation unit */
#else
#include "mico_cfu.h"

#ifdef MICO_CFU_EMULATE
/* value of a code of b bits in the low bits of c */
static int32_t cfu_val(uint32_t c, uint32_t b) {
    if (b == 1u)
        return (int32_t)(c & 1u) * 2 - 1;
    c &= (1u << b) - 1u;
    return (int32_t)(c ^ (1u << (b - 1u))) - (int32_t)(1u << (b - 1u));
}

int32_t mico_cfu_emulate(uint32_t function_id, uint32_t rs1, uint32_t rs2) {
    uint32_t f7 = (function_id >> 3) & 0x7Fu, seg = function_id & 7u;
    uint32_t la = (f7 >> 2) & 3u, lw = f7 & 3u, lx, ln, rl, L, i, xw, nw;
    int32_t acc = 0;
    if (f7 >> 4)
        return 0;
    if (la >= lw) {
        lx = la; ln = lw; xw = rs1; nw = rs2;
    } else {
        lx = lw; ln = la; xw = rs2; nw = rs1;
    }
    rl = lx - ln;
    if (seg >> rl)
        return 0;
    nw >>= seg << (5u - rl);            /* segment s: bits [s*32/R, ...) */
    L = 32u >> lx;
    for (i = 0; i < L; i++)
        acc += cfu_val(xw >> (i << lx), 1u << lx) * cfu_val(nw >> (i << ln), 1u << ln);
    return acc;
}
#endif

/* ---- per-pair geometry (integer constant expressions) --------------------- */
#define WB(QA, QW) ((QA) > (QW) ? (QA) : (QW))          /* wide width */
#define NB(QA, QW) ((QA) < (QW) ? (QA) : (QW))          /* narrow width */
#define RR(QA, QW) (WB(QA, QW) / NB(QA, QW))            /* segments per narrow word */
#define UU(QA, QW) 8                                    /* wide words per block (>= R) */
/* activation / weight word holding wide word j of a block */
#define AI(QA, QW, j) ((QA) < (QW) ? (j) / RR(QA, QW) : (j))
#define WI(QA, QW, j) ((QW) < (QA) ? (j) / RR(QA, QW) : (j))
/* words the activation / weight pointers advance per block */
#define SA(QA, QW) ((QA) < (QW) ? UU(QA, QW) / RR(QA, QW) : UU(QA, QW))
#define SW(QA, QW) ((QW) < (QA) ? UU(QA, QW) / RR(QA, QW) : UU(QA, QW))
/* the CFU op on wide word j of the block (segment j % R) */
#define OP(QA, QW, j, x, y) \
    ((int32_t)mico_cfu((j) % RR(QA, QW), MICO_CFU_FUNCT7(QA, QW), (x), (y)))
/* wide word j of the partial last block, when r > j */
#define TAIL(QA, QW, j)                                                           \
    if (r > (j))                                                                  \
        acc += OP(QA, QW, j, a[AI(QA, QW, j)], w[WI(QA, QW, j)]);

/* dot of the activation row a with the weight row w: nblk blocks of U wide
 * words, then r (< U) wide words; 1x1 pad lanes not yet subtracted.  The
 * activation words of a block are loaded before its weight words: where an
 * activation line and a weight line share a set of a direct-mapped D-cache
 * (VexRiscv: 4 KiB, 1 way) this costs 2 misses per block, not 2 per word. */
#define DEFINE_DOT(QA, QW)                                                        \
static int32_t dot_##QA##_##QW(const uint32_t *a, const uint32_t *w,             \
                               uint32_t nblk, uint32_t r) {                       \
    const uint32_t *aend = a + nblk * (uint32_t)SA(QA, QW);                       \
    int32_t acc = 0;                                                              \
    while (a != aend) {                                                           \
        uint32_t x0, x1, x2, x3, x4, x5, x6, x7, y0, y1, y2, y3, y4, y5, y6, y7;  \
        int32_t t0, t1, t2, t3, t4, t5, t6, t7;                                   \
        x0 = a[AI(QA, QW, 0)]; x1 = a[AI(QA, QW, 1)];                            \
        x2 = a[AI(QA, QW, 2)]; x3 = a[AI(QA, QW, 3)];                            \
        x4 = a[AI(QA, QW, 4)]; x5 = a[AI(QA, QW, 5)];                            \
        x6 = a[AI(QA, QW, 6)]; x7 = a[AI(QA, QW, 7)];                            \
        y0 = w[WI(QA, QW, 0)]; y1 = w[WI(QA, QW, 1)];                            \
        y2 = w[WI(QA, QW, 2)]; y3 = w[WI(QA, QW, 3)];                            \
        y4 = w[WI(QA, QW, 4)]; y5 = w[WI(QA, QW, 5)];                            \
        y6 = w[WI(QA, QW, 6)]; y7 = w[WI(QA, QW, 7)];                            \
        a += SA(QA, QW);                                                          \
        w += SW(QA, QW);                                                          \
        t0 = OP(QA, QW, 0, x0, y0);                                               \
        t1 = OP(QA, QW, 1, x1, y1);                                               \
        t2 = OP(QA, QW, 2, x2, y2);                                               \
        t3 = OP(QA, QW, 3, x3, y3);                                               \
        t4 = OP(QA, QW, 4, x4, y4);                                               \
        t5 = OP(QA, QW, 5, x5, y5);                                               \
        t6 = OP(QA, QW, 6, x6, y6);                                               \
        t7 = OP(QA, QW, 7, x7, y7);                                               \
        acc += ((t0 + t1) + (t2 + t3)) + ((t4 + t5) + (t6 + t7));                 \
    }                                                                             \
    TAIL(QA, QW, 0) TAIL(QA, QW, 1) TAIL(QA, QW, 2) TAIL(QA, QW, 3)               \
    TAIL(QA, QW, 4) TAIL(QA, QW, 5) TAIL(QA, QW, 6)                               \
    return acc;                                                                   \
}

/* keeps the code on both sides of it in place: the operands count as
 * rewritten here (empty asm; volatile asms keep their order, so the loads
 * before an ORDER stay before the CFU ops after it) */
#ifdef MICO_CFU_EMULATE
#define ORDER(a, b, c, d, e, f, g, h)
#else
#define ORDER(a, b, c, d, e, f, g, h)                                             \
    __asm__ __volatile__("" : "+r"(a), "+r"(b), "+r"(c), "+r"(d), "+r"(e), "+r"(f), \
                         "+r"(g), "+r"(h));
#endif

/* W word of row block (w0..w3) holding wide word j: loaded at j when the
 * weights are the wide operand, or at the first of each R words otherwise */
#define LOADW(QA, QW, j) ((QW) >= (QA) || (j) % RR(QA, QW) == 0)

/* one wide word j of a block for four weight rows: the rows' weight words
 * (when due), the previous word's results added (they separate the loads
 * from the CFU ops, which wait while a load is in memory / write-back), the
 * four CFU ops on the activation word held in x[] */
#define STEP4(QA, QW, j)                                                          \
    if (LOADW(QA, QW, j)) {                                                       \
        y0 = w0[WI(QA, QW, j)]; y1 = w1[WI(QA, QW, j)];                          \
        y2 = w2[WI(QA, QW, j)]; y3 = w3[WI(QA, QW, j)];                          \
    }                                                                             \
    ORDER(y0, y1, y2, y3, s0, s1, s2, s3)                                         \
    s0 += t0; s1 += t1; s2 += t2; s3 += t3;                                       \
    ORDER(s0, s1, s2, s3, t0, t1, t2, t3)                                         \
    t0 = OP(QA, QW, j, x[AI(QA, QW, j)], y0);                                     \
    t1 = OP(QA, QW, j, x[AI(QA, QW, j)], y1);                                     \
    t2 = OP(QA, QW, j, x[AI(QA, QW, j)], y2);                                     \
    t3 = OP(QA, QW, j, x[AI(QA, QW, j)], y3);
/* wide word j of the partial last block for four rows, when r > j */
#define TAIL4(QA, QW, j)                                                          \
    if (r > (j)) {                                                                \
        s0 += OP(QA, QW, j, a[AI(QA, QW, j)], w0[WI(QA, QW, j)]);                \
        s1 += OP(QA, QW, j, a[AI(QA, QW, j)], w1[WI(QA, QW, j)]);                \
        s2 += OP(QA, QW, j, a[AI(QA, QW, j)], w2[WI(QA, QW, j)]);                \
        s3 += OP(QA, QW, j, a[AI(QA, QW, j)], w3[WI(QA, QW, j)]);                \
    }

/* dots of the activation row a with four weight rows (w, stride ws words),
 * less corr, into y[i*ys] (half: the mean with what y holds): each
 * activation word is loaded once for the four rows; per block the
 * activation words come first (one cache line: where it shares a set of the
 * direct-mapped D-cache with a weight row, that costs 2 misses per block,
 * not per word) */
#define DEFINE_DOT4(QA, QW)                                                       \
static void dot4_##QA##_##QW(const uint32_t *a, const uint32_t *w, uint32_t ws,  \
                             uint32_t nblk, uint32_t r, int32_t *y,               \
                             uint32_t ys, int32_t corr, int half) {               \
    const uint32_t *aend = a + nblk * (uint32_t)SA(QA, QW);                       \
    const uint32_t *w0 = w, *w1 = w0 + ws, *w2 = w1 + ws, *w3 = w2 + ws;        \
    int32_t s0 = 0, s1 = 0, s2 = 0, s3 = 0, t0 = 0, t1 = 0, t2 = 0, t3 = 0;      \
    uint32_t y0 = 0, y1 = 0, y2 = 0, y3 = 0;                                      \
    while (a != aend) {                                                           \
        uint32_t x[8];                                                            \
        x[AI(QA, QW, 0)] = a[AI(QA, QW, 0)]; x[AI(QA, QW, 1)] = a[AI(QA, QW, 1)];\
        x[AI(QA, QW, 2)] = a[AI(QA, QW, 2)]; x[AI(QA, QW, 3)] = a[AI(QA, QW, 3)];\
        x[AI(QA, QW, 4)] = a[AI(QA, QW, 4)]; x[AI(QA, QW, 5)] = a[AI(QA, QW, 5)];\
        x[AI(QA, QW, 6)] = a[AI(QA, QW, 6)]; x[AI(QA, QW, 7)] = a[AI(QA, QW, 7)];\
        STEP4(QA, QW, 0) STEP4(QA, QW, 1) STEP4(QA, QW, 2) STEP4(QA, QW, 3)       \
        STEP4(QA, QW, 4) STEP4(QA, QW, 5) STEP4(QA, QW, 6) STEP4(QA, QW, 7)       \
        a += SA(QA, QW);                                                          \
        w0 += SW(QA, QW); w1 += SW(QA, QW); w2 += SW(QA, QW); w3 += SW(QA, QW);   \
    }                                                                             \
    s0 += t0; s1 += t1; s2 += t2; s3 += t3;                                       \
    TAIL4(QA, QW, 0) TAIL4(QA, QW, 1) TAIL4(QA, QW, 2) TAIL4(QA, QW, 3)           \
    TAIL4(QA, QW, 4) TAIL4(QA, QW, 5) TAIL4(QA, QW, 6)                            \
    s0 -= corr; s1 -= corr; s2 -= corr; s3 -= corr;                               \
    if (half) {                                                                   \
        s0 = (y[0] + s0) / 2; s1 = (y[ys] + s1) / 2;                              \
        s2 = (y[2 * ys] + s2) / 2; s3 = (y[3 * ys] + s3) / 2;                     \
    }                                                                             \
    y[0] = s0; y[ys] = s1; y[2 * ys] = s2; y[3 * ys] = s3;                        \
}

/* y[i*ystride] = dot(a, w + i*wstride) for i < count, rows of K codes, four
 * rows at a time, then one; half: y[i*ystride] = (y[i*ystride] + dot) / 2
 * instead (1-bit padding) */
#define DEFINE_ROWS(QA, QW)                                                       \
DEFINE_DOT(QA, QW)                                                                \
DEFINE_DOT4(QA, QW)                                                               \
static void rows_##QA##_##QW(const uint32_t *a, const uint32_t *w, int32_t *y,   \
                             uint32_t count, uint32_t wstride, uint32_t ystride,  \
                             uint32_t K, int half) {                              \
    const uint32_t per = 32u / (uint32_t)WB(QA, QW);                              \
    const uint32_t nwide = (K + per - 1u) / per;                                  \
    const uint32_t nblk = nwide / (uint32_t)UU(QA, QW);                           \
    const uint32_t r = nwide % (uint32_t)UU(QA, QW);                              \
    const int32_t corr = ((QA) == 1 && (QW) == 1) ? (int32_t)(32u * nwide - K) : 0; \
    for (; count >= 4u; count -= 4u, w += 4u * wstride, y += 4u * ystride)        \
        dot4_##QA##_##QW(a, w, wstride, nblk, r, y, ystride, corr, half);         \
    for (; count; count--, w += wstride, y += ystride) {                          \
        int32_t e = dot_##QA##_##QW(a, w, nblk, r) - corr;                        \
        *y = half ? (*y + e) / 2 : e;                                             \
    }                                                                             \
}

DEFINE_ROWS(1, 1) DEFINE_ROWS(1, 2) DEFINE_ROWS(1, 4) DEFINE_ROWS(1, 8)
DEFINE_ROWS(2, 1) DEFINE_ROWS(2, 2) DEFINE_ROWS(2, 4) DEFINE_ROWS(2, 8)
DEFINE_ROWS(4, 1) DEFINE_ROWS(4, 2) DEFINE_ROWS(4, 4) DEFINE_ROWS(4, 8)
DEFINE_ROWS(8, 1) DEFINE_ROWS(8, 2) DEFINE_ROWS(8, 4) DEFINE_ROWS(8, 8)

typedef void (*rows_fn)(const uint32_t *, const uint32_t *, int32_t *, uint32_t,
                        uint32_t, uint32_t, uint32_t, int);

/* indexed by ia*4 + iw (the funct7 of the pair) */
static const rows_fn rows_tab[16] = {
    rows_1_1, rows_1_2, rows_1_4, rows_1_8, rows_2_1, rows_2_2, rows_2_4, rows_2_8,
    rows_4_1, rows_4_2, rows_4_4, rows_4_8, rows_8_1, rows_8_2, rows_8_4, rows_8_8,
};

static uint32_t lg_of(int b) {
    return b == 1 ? 0u : b == 2 ? 1u : b == 4 ? 2u : 3u;
}

/* mico_words(L, 1 << lg) without a division (rv32im divides in ~35 cycles) */
static uint32_t words_lg(uint32_t L, uint32_t lg) {
    return (L + (31u >> lg)) >> (5u - lg);
}

/* ---- matmul --------------------------------------------------------------- */
/* bytes of the direct-mapped data cache the copy of an activation row is
 * placed for (VexRiscv: 4 KiB, 32-byte lines) */
#ifndef MICO_DCACHE_BYTES
#define MICO_DCACHE_BYTES 4096u
#endif

/* where in scratch (bytes free) a copy of an activation row (4*wa bytes)
 * shares no cache line set with any weight row (stride S = 4*ws bytes) at
 * the same offset: the row starts lie P apart modulo the cache size (P the
 * largest power of two dividing S, at most the cache size), so half way
 * between two of them is at least P/2 from all; `bytes` (no copy) when P/2
 * is under a line or scratch has no room */
static uint32_t act_copy_offset(uintptr_t scratch, uint32_t bytes, const uint32_t *W, uint32_t ws,
                                uint32_t wa) {
    uint32_t S = 4u * ws, P = S & (0u - S), o;
    if (P > MICO_DCACHE_BYTES)
        P = MICO_DCACHE_BYTES;
    if (P < 64u)
        return bytes;
    o = (uint32_t)(((uintptr_t)W + P / 2u - scratch) & (P - 1u));
    return o + 4u * wa <= bytes ? o : bytes;
}

void mico_matmul_simd(const uint32_t *A, const uint32_t *W, int32_t *Y,
                      uint32_t N, uint32_t M, uint32_t K, int qa, int qw,
                      void *scratch) {
    uint32_t la = lg_of(qa), lw = lg_of(qw), n, i;
    rows_fn rows = rows_tab[la * 4u + lw];
    uint32_t wa = words_lg(K, la), ww = words_lg(K, lw);
    /* mico_matmul_scratch(K), used when the weights stream through the cache
     * (with everything cached, a copy would only take room) */
    uint32_t bytes = scratch && 4u * (wa + M * ww) > MICO_DCACHE_BYTES ? 2u * ((K + 31u) & ~31u) : 0u;
    uint32_t off = act_copy_offset((uintptr_t)scratch, bytes, W, ww, wa);
    uint32_t *copy = off < bytes ? (uint32_t *)(void *)((uint8_t *)scratch + off) : 0;
    for (n = 0; n < N; n++, A += wa, Y += M) {
        /* the row read where no weight row of a block evicts it (rows whose
         * stride is a power of two share sets with it otherwise, block by block) */
        const uint32_t *a = A;
        if (copy) {
            for (i = 0; i < wa; i++)
                copy[i] = A[i];
            a = copy;
        }
        rows(a, W, Y, M, ww, 1u, K, 0);
    }
}

/* ---- conv2d --------------------------------------------------------------- */
/* The patch of one output pixel is appended to a packed bit stream run by
 * run: per (c, kh) window row, the left padding, the in-image columns (one
 * contiguous run of codes in the packed plane, moved up to 32 bits at a
 * time) and the right padding.  Padding is code 0; for 1-bit inputs a second
 * stream marks the padded positions (pad mask). */
typedef struct {
    uint32_t *out, *pmo;    /* next word of the codes / pad-mask streams */
    uint32_t cur, pmc, sh;  /* pending bits (sh < 32 of them) */
} bitstream;

/* append nb (1..32) bits v (bits above nb zero), with pad-mask bits pm */
static inline void bs_put(bitstream *bs, uint32_t v, uint32_t pm, uint32_t nb, int with_pm) {
    uint32_t sh = bs->sh;
    bs->cur |= v << sh;
    if (with_pm)
        bs->pmc |= pm << sh;
    sh += nb;
    if (sh >= 32u) {
        *bs->out++ = bs->cur;
        if (with_pm)
            *bs->pmo++ = bs->pmc;
        sh -= 32u;
        bs->cur = sh ? v >> (nb - sh) : 0u;
        if (with_pm)
            bs->pmc = sh ? pm >> (nb - sh) : 0u;
    }
    bs->sh = sh;
}

static inline void bs_flush(bitstream *bs, int with_pm) {
    if (bs->sh) {
        *bs->out = bs->cur;
        if (with_pm)
            *bs->pmo = bs->pmc;
    }
}

/* n padding codes of 2^lb bits */
static inline void bs_pad(bitstream *bs, uint32_t n, uint32_t lb) {
    const uint32_t per = 32u >> lb;
    while (n) {
        uint32_t c = n > per ? per : n;
        bs_put(bs, 0u, c == 32u ? ~0u : (1u << c) - 1u, c << lb, lb == 0u);
        n -= c;
    }
}

/* n codes of 2^lb bits from the packed plane X, starting at element i */
static inline void bs_run(bitstream *bs, const uint32_t *X, uint32_t i, uint32_t n, uint32_t lb) {
    const uint32_t per = 32u >> lb;
    while (n) {
        uint32_t c = n > per ? per : n, nb = c << lb;
        uint32_t p = i << lb, off = p & 31u;
        const uint32_t *x = X + (p >> 5);
        uint32_t v = x[0] >> off;
        if (off + nb > 32u)
            v |= x[1] << (32u - off);
        if (nb < 32u)
            v &= (1u << nb) - 1u;
        bs_put(bs, v, 0u, nb, lb == 0u);
        i += c;
        n -= c;
    }
}

/* gather the patch of output pixel (oh, ow) from Cg planes starting at X
 * (plane stride wpp words), packed at 2^LB bits into out; for LB = 0 also
 * the pad mask into pmo.  Returns 1 if any element came from padding. */
#define DEFINE_GATHER(NAME, LB)                                                   \
static int NAME(const uint32_t *X, uint32_t wpp, uint32_t Cg,                     \
                const mico_conv_shape *s, uint32_t oh, uint32_t ow,               \
                uint32_t *out, uint32_t *pmo) {                                   \
    const int32_t KS = (int32_t)s->KS, H = (int32_t)s->H, W = (int32_t)s->W;      \
    const int32_t ih0 = (int32_t)(oh * s->S) - (int32_t)s->P;                     \
    const int32_t iw0 = (int32_t)(ow * s->S) - (int32_t)s->P;                     \
    int32_t l = -iw0, rr, kh, kh0, kh1;                                           \
    uint32_t run, nb, mask, cc;                                                   \
    bitstream bs;                                                                 \
    /* the columns split the same way in every window row */                     \
    if (l < 0)                                                                    \
        l = 0;                                                                    \
    if (l > KS)                                                                   \
        l = KS;                                                                   \
    rr = iw0 + KS - W;                                                            \
    if (rr < 0)                                                                   \
        rr = 0;                                                                   \
    if (rr > KS - l)                                                              \
        rr = KS - l;                                                              \
    run = (uint32_t)(KS - l - rr);                                                \
    nb = run << (LB);                                                             \
    mask = nb >= 32u ? ~0u : (1u << nb) - 1u;                                     \
    /* window rows kh0 <= kh < kh1 are inside the image */                        \
    kh0 = -ih0 > 0 ? -ih0 : 0;                                                    \
    if (kh0 > KS)                                                                 \
        kh0 = KS;                                                                 \
    kh1 = H - ih0 < KS ? H - ih0 : KS;                                            \
    if (kh1 < kh0)                                                                \
        kh1 = kh0;                                                                \
    bs.out = out; bs.pmo = pmo; bs.cur = 0; bs.pmc = 0; bs.sh = 0;                \
    if (l == 0 && rr == 0 && kh0 == 0 && kh1 == KS && nb <= 32u) {                \
        /* inside the image, each window row one chunk: the common case */        \
        uint32_t row0 = (uint32_t)(ih0 * W + iw0), wstep = (uint32_t)W;           \
        for (cc = 0; cc < Cg; cc++, X += wpp) {                                   \
            uint32_t i = row0;                                                    \
            for (kh = 0; kh < KS; kh++, i += wstep) {                             \
                uint32_t p = i << (LB), off = p & 31u;                            \
                const uint32_t *x = X + (p >> 5);                                 \
                uint32_t v = x[0] >> off;                                         \
                if (off + nb > 32u)                                               \
                    v |= x[1] << (32u - off);                                     \
                bs_put(&bs, v & mask, 0u, nb, (LB) == 0u);                        \
            }                                                                     \
        }                                                                         \
        bs_flush(&bs, (LB) == 0u);                                                \
        return 0;                                                                 \
    }                                                                             \
    for (cc = 0; cc < Cg; cc++, X += wpp) {                                       \
        for (kh = 0; kh < KS; kh++) {                                             \
            if (kh < kh0 || kh >= kh1) {                                          \
                bs_pad(&bs, (uint32_t)KS, LB);                                    \
                continue;                                                         \
            }                                                                     \
            if (l)                                                                \
                bs_pad(&bs, (uint32_t)l, LB);                                     \
            if (run)                                                              \
                bs_run(&bs, X, (uint32_t)((ih0 + kh) * W + iw0 + l), run, LB);    \
            if (rr)                                                               \
                bs_pad(&bs, (uint32_t)rr, LB);                                    \
        }                                                                         \
    }                                                                             \
    bs_flush(&bs, (LB) == 0u);                                                    \
    return 1;                                                                     \
}

DEFINE_GATHER(gather_b1, 0u)
DEFINE_GATHER(gather_b2, 1u)
DEFINE_GATHER(gather_b4, 2u)
DEFINE_GATHER(gather_b8, 3u)

typedef int (*gather_fn)(const uint32_t *, uint32_t, uint32_t, const mico_conv_shape *,
                         uint32_t, uint32_t, uint32_t *, uint32_t *);

void mico_conv2d_simd(const uint32_t *X, const uint32_t *Wt, int32_t *Y,
                      const mico_conv_shape *s, int qa, int qw, void *scratch) {
    uint32_t OH = mico_conv_out_h(s), OW = mico_conv_out_w(s);
    uint32_t G = s->G, Cg = s->C / G, Kg = s->K / G;
    uint32_t L = Cg * s->KS * s->KS;
    uint32_t la = lg_of(qa), lw = lg_of(qw);
    uint32_t wpp = words_lg(s->H * s->W, la);              /* words per plane */
    uint32_t wpr = words_lg(L, lw);                        /* words per weight row */
    uint32_t plane = OH * OW, npw = words_lg(L, 0u);
    uint32_t *packed = (uint32_t *)scratch;
    uint32_t *pm = packed + words_lg(L, la);               /* qa == 1 only */
    rows_fn rows = rows_tab[la * 4u + lw];
    gather_fn gather;
    uint32_t n, g, oh, ow, j;

    switch (qa) {
    case 1: gather = gather_b1; break;
    case 2: gather = gather_b2; break;
    case 4: gather = gather_b4; break;
    default: gather = gather_b8; break;
    }
    for (n = 0; n < s->N; n++) {
        for (g = 0; g < G; g++) {
            const uint32_t *Xg = X + (n * s->C + g * Cg) * wpp;
            const uint32_t *Wg = Wt + g * Kg * wpr;
            int32_t *Yg = Y + (n * s->K + g * Kg) * plane;
            for (oh = 0; oh < OH; oh++) {
                for (ow = 0; ow < OW; ow++) {
                    int32_t *y = Yg + oh * OW + ow;
                    int padded = gather(Xg, wpp, Cg, s, oh, ow, packed, pm);
                    if (qa == 1 && padded) {
                        rows(packed, Wg, y, Kg, wpr, plane, L, 0);   /* pads -1 */
                        for (j = 0; j < npw; j++)
                            pm[j] |= packed[j];                      /* pads +1 */
                        rows(pm, Wg, y, Kg, wpr, plane, L, 1);
                    } else {
                        rows(packed, Wg, y, Kg, wpr, plane, L, 0);
                    }
                }
            }
        }
    }
}
#endif /* MICO_CFU */
