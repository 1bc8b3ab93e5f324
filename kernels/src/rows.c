/* One activation row against many packed weight rows: the inner loops of
 * mico_matmul and mico_conv2d (scalar rv32im and the host).
 *
 * The activation row is prepared once (mico_act_prep_*) into the form the
 * pair's loop reads, then dotted with every weight row (mico_dot_rows), four
 * rows at a time (then two, then one) so each activation load serves four
 * outputs.  Three loops:
 *
 * - i8 (8x8): the weight bytes are int8 values as stored, read with lb; the
 *   activation words are read four at a time into registers (so a weight row
 *   whose cache set collides with the activation row costs two misses per 16
 *   codes, not two per code) and their bytes extracted with shifts.
 *
 * - popcount (1x1): values +-1, a*w = 1 - 2*(a xor w), 32 codes per word.
 *
 * - lanes (every other pair): one 32-bit multiply computes a dot of two (or
 *   four) code pairs.  A weight word x is flipped to unsigned codes
 *   u = code ^ signbit = value + o (o = 2^(qw-1); qw = 1: u = code and
 *   value = 2u - 1), and spread into lanes of 16 (8) bits:
 *       w'_j = (x >> qw*j) & MASK     lane i = u[j + J*i],  J = 32/qw/LANES.
 *   The prepared activation word for the same j holds the values in
 *   reversed lanes:  a'_j = sum_i a[j + J*i] << LW*(LANES-1-i)  (LW = 32/LANES).
 *   In a'_j * w'_j (mod 2^32) the top lane receives sum_i a[..]*u[..], the
 *   lanes below only cross terms.  Products are summed in P for F words, then
 *   the top lane is moved to the accumulator: with P started at
 *   2^31 + 2^(S-1) (S = 32 - LW: an offset that keeps the lane non-negative
 *   and the rounding half of the cross terms), P >> S is the lane sum plus
 *   2^(LW-1), exact while the lane sum stays within +-2^(LW-1) and the cross
 *   terms within +-2^(S-1); F is the largest number of words for which both
 *   hold with the pair's extreme values (FLUSH_W below; 4 lanes where one
 *   word fits, else 2).  Finally
 *   dot = sum a*(u - o) = acc - o*sum(a)   (qw = 1: 2*acc - sum(a)),
 *   sum(a) being computed once by the preparation.  A row's last, partial
 *   weight word costs only as many multiplies as it holds codes (up to J).
 *
 * Activation values are produced by mico_act_decode() only (mico_kernels.h);
 * all three loops work from values, so another activation code (for example
 * unsigned) changes that function and the sum (and the lane bounds), not the
 * loops.  gcc's first scheduling pass runs with register pressure on: without
 * it, it hoists every load of a block and spills.
 */
#include "mico_kernels.h"

#pragma GCC optimize("sched-pressure")

#define AI static inline __attribute__((always_inline))
/* the loops over rows, lanes and words of a block have constant counts */
#define UNROLL_ALL _Pragma("GCC unroll 16")

/* ---- per-pair constants (integer constant expressions) --------------------- */
#define MIN_(x, y) ((x) < (y) ? (x) : (y))
#define CPW(qw) (32 / (qw))                              /* codes per weight word */
#define VNEG(qa) ((qa) == 1 ? 1 : 1 << ((qa) - 1))       /* largest |negative value| */
#define VPOS(qa) ((qa) == 1 ? 1 : (1 << ((qa) - 1)) - 1) /* largest positive value */
#define UMAX(qw) ((1 << (qw)) - 1)                       /* largest unsigned weight code */
/* words per flush with lanes of 2*half values: every word adds CPW products
 * to the top lane, which must stay in [-half, half) */
#define FLUSH_W(qa, qw, half)                                                      \
    MIN_((half) / (CPW(qw) * VNEG(qa) * UMAX(qw)), ((half) - 1) / (CPW(qw) * VPOS(qa) * UMAX(qw)))
/* the loop of a pair: i8, popcount, or 4 lanes where a word fits, else 2 */
#define LANES_OF(qa, qw) (FLUSH_W(qa, qw, 128) >= 1 ? 4 : 2)
#define FLUSH_OF(qa, qw) (LANES_OF(qa, qw) == 4 ? FLUSH_W(qa, qw, 128) : FLUSH_W(qa, qw, 32768))
#define IS_I8(qa, qw) ((qa) == 8 && (qw) == 8)
#define IS_POP1(qa, qw) ((qa) == 1 && (qw) == 1)
/* the lane masks: low qw bits of each lane */
#define LMASK(qw, lanes) ((lanes) == 4 ? UMAX(qw) * 0x01010101u : UMAX(qw) * 0x00010001u)
/* sign bit of every code (qw = 1 codes are already 0/1 = u) */
#define SIGNS(qw) ((qw) == 1 ? 0u : (qw) == 2 ? 0xAAAAAAAAu : (qw) == 4 ? 0x88888888u : 0x80808080u)

static inline int32_t s32(uint32_t u) {
    /* two's complement reinterpretation without implementation-defined casts */
    return u < 0x80000000u ? (int32_t)u : -(int32_t)(~u) - 1;
}

/* ---- preparing an activation row ------------------------------------------ */
uint32_t mico_act_prep_bytes(uint32_t K, int qa, int qw) {
    uint32_t cpw = 32u / (uint32_t)qw;
    uint32_t L = mico_words(K, (uint32_t)qw) * cpw;   /* codes the weight rows hold */
    if (IS_I8(qa, qw))
        return 0;
    if (IS_POP1(qa, qw))
        return 4u * mico_words(K, 1u);
    return LANES_OF(qa, qw) == 4 ? L : 2u * L;   /* 1 or 2 bytes per code */
}

/* the lanes form of K values v for weight words of J*lanes codes: per word,
 * J words a'_j = sum_i v[j + J*i] << LW*(lanes-1-i), codes past K read as 0.
 * A word's values are all read before its words are written (the compiler
 * keeps that order: v and out may alias), so v may start at byte
 * mico_words(K,qw)*32/qw of out or later: reads never fall behind writes
 * (2 lanes write 2 bytes per code, 4 lanes 1).  Of a last, partial weight
 * word only the words the loops read are written. */
/* lane word j of a weight word's values p, their sum added to *sum */
AI uint32_t lane_word(const int8_t *p, uint32_t j, const uint32_t J, const uint32_t LANES,
                      int32_t *sum) {
    uint32_t i, wd = 0;
    UNROLL_ALL
    for (i = 0; i < LANES; i++) {
        int32_t x = p[j + J * i];
        *sum += x;
        wd += (uint32_t)x << (32u / LANES) * (LANES - 1u - i);
    }
    return wd;
}

/* returns the sum of the K values */
#define DEFINE_BUILD(LANES, QW)                                                        \
static int32_t build_##LANES##_##QW(const int8_t *v, uint32_t K, uint32_t avail,      \
                                    uint32_t *out) {                                   \
    const uint32_t J = 32u / (QW) / (LANES), cpw = 32u / (QW);                        \
    uint32_t t, j, jn, wd[16];                                                         \
    int32_t sum = 0;                                                                   \
    int8_t tmp[32];                                                                    \
    for (t = 0; t + cpw <= K; t += cpw, v += cpw, out += J) {                          \
        UNROLL_ALL                                                                     \
        for (j = 0; j < J; j++)                                                        \
            wd[j] = lane_word(v, j, J, LANES, &sum);                                   \
        UNROLL_ALL                                                                     \
        for (j = 0; j < J; j++)                                                        \
            out[j] = wd[j];                                                            \
    }                                                                                  \
    if (t == K)                                                                        \
        return sum;                                                                    \
    /* the last, partial word: the loops read its first min(J, K-t) words */           \
    if (t + cpw > avail) {                                                             \
        for (j = 0; j < cpw; j++)                                                      \
            tmp[j] = j < K - t ? v[j] : 0;                                             \
        v = tmp;                                                                       \
    }                                                                                  \
    jn = K - t < J ? K - t : J;                                                        \
    for (j = 0; j < jn; j++)                                                           \
        wd[j] = lane_word(v, j, J, LANES, &sum);                                       \
    for (j = 0; j < jn; j++)                                                           \
        out[j] = wd[j];                                                                \
    return sum;                                                                        \
}
DEFINE_BUILD(2, 1) DEFINE_BUILD(2, 2) DEFINE_BUILD(2, 4) DEFINE_BUILD(2, 8)
DEFINE_BUILD(4, 1) DEFINE_BUILD(4, 2) DEFINE_BUILD(4, 4)

/* avail: codes readable from v, 0 from K on (>= K); returns the sum */
static int32_t build_lanes(const int8_t *v, uint32_t K, uint32_t avail, int qa, int qw,
                           uint32_t *out) {
    if (LANES_OF(qa, qw) == 4) {
        switch (qw) {
        case 1: return build_4_1(v, K, avail, out);
        case 2: return build_4_2(v, K, avail, out);
        default: return build_4_4(v, K, avail, out);
        }
    }
    switch (qw) {
    case 1: return build_2_1(v, K, avail, out);
    case 2: return build_2_2(v, K, avail, out);
    case 4: return build_2_4(v, K, avail, out);
    default: return build_2_8(v, K, avail, out);
    }
}

/* the lanes form straight from a packed row of K qa-bit codes (qa < 8), in
 * blocks of 32 codes (qa activation words, qw weight words), each value
 * decoded where its lane word is assembled; returns the sum of the K values */
#define BP_VAL(QA, k) mico_act_decode(a[(k) * (QA) / 32u] >> ((k) * (QA) % 32u), (QA))
#define DEFINE_BUILD_PACKED(QA, QW)                                                    \
static int32_t buildp_##QA##_##QW(const uint32_t *a, uint32_t K, uint32_t *out) {     \
    const uint32_t LANES = LANES_OF(QA, QW), J = 32u / (QW) / LANES, cpw = 32u / (QW); \
    const uint32_t LW = 32u / LANES;                                                   \
    int32_t sum = 0, x;                                                                \
    uint32_t b, c, j, i, n, jn, wd;                                                    \
    for (b = 0; b + 32u <= K; b += 32u, a += (QA)) {                                   \
        UNROLL_ALL                                                                     \
        for (c = 0; c < (QW); c++) {                                                   \
            UNROLL_ALL                                                                 \
            for (j = 0; j < J; j++) {                                                  \
                wd = 0;                                                                \
                UNROLL_ALL                                                             \
                for (i = 0; i < LANES; i++) {                                          \
                    x = BP_VAL(QA, c * cpw + j + J * i);                                   \
                    sum += x;                                                          \
                    wd += (uint32_t)x << LW * (LANES - 1u - i);                        \
                }                                                                      \
                *out++ = wd;                                                           \
            }                                                                          \
        }                                                                              \
    }                                                                                  \
    /* the last block: codes past K read 0; of a partial weight word only the  \
     * first min(J, codes left) words are read by the loops */                        \
    n = K - b;                                                                         \
    for (c = 0; c * cpw < n; c++) {                                                    \
        jn = n - c * cpw >= cpw ? J : n - c * cpw < J ? n - c * cpw : J;               \
        for (j = 0; j < jn; j++) {                                                     \
            wd = 0;                                                                    \
            for (i = 0; i < LANES; i++) {                                              \
                uint32_t k = c * cpw + j + J * i;                                      \
                x = k < n ? BP_VAL(QA, k) : 0;                                            \
                sum += x;                                                              \
                wd += (uint32_t)x << LW * (LANES - 1u - i);                            \
            }                                                                          \
            *out++ = wd;                                                               \
        }                                                                              \
    }                                                                                  \
    return sum;                                                                        \
}
DEFINE_BUILD_PACKED(1, 2) DEFINE_BUILD_PACKED(1, 4) DEFINE_BUILD_PACKED(1, 8)
DEFINE_BUILD_PACKED(2, 1) DEFINE_BUILD_PACKED(2, 2) DEFINE_BUILD_PACKED(2, 4) DEFINE_BUILD_PACKED(2, 8)
DEFINE_BUILD_PACKED(4, 1) DEFINE_BUILD_PACKED(4, 2) DEFINE_BUILD_PACKED(4, 4) DEFINE_BUILD_PACKED(4, 8)

typedef int32_t (*buildp_fn)(const uint32_t *, uint32_t, uint32_t *);
/* indexed by log2(qa) * 4 + log2(qw), qa < 8 (1x1 reads the packed row as it is) */
static const buildp_fn buildp_tab[12] = {
    0, buildp_1_2, buildp_1_4, buildp_1_8, buildp_2_1, buildp_2_2, buildp_2_4, buildp_2_8,
    buildp_4_1, buildp_4_2, buildp_4_4, buildp_4_8,
};

static uint32_t lg(int b) {
    return b == 1 ? 0u : b == 2 ? 1u : b == 4 ? 2u : 3u;
}

static void prep(const uint32_t *packed, const int8_t *v, uint32_t K, int qa, int qw,
                 void *buf, mico_act_row *r) {
    uint32_t cpw = 32u / (uint32_t)qw, Lw = mico_words(K, (uint32_t)qw) * cpw, avail = K;
    int32_t sum = 0;
    r->K = K;
    r->qa = qa;
    r->qw = qw;
    r->corr = 0;
    if (IS_I8(qa, qw)) {
        r->words = packed ? packed : (const uint32_t *)(const void *)v;
        return;
    }
    if (IS_POP1(qa, qw)) {
        if (!packed) {
            mico_pack(v, K, 1, (uint32_t *)buf);
            packed = (const uint32_t *)buf;
        }
        r->words = packed;
        r->corr = (int32_t)K;
        return;
    }
    if (packed && qa < 8) {
        sum = buildp_tab[lg(qa) * 4u + lg(qw)](packed, K, (uint32_t *)buf);
    } else {
        /* 8-bit codes are int8 values; a caller's int8 row is 0 up to Lw */
        if (packed)
            v = (const int8_t *)(const void *)packed;
        else
            avail = Lw;
        sum = build_lanes(v, K, avail, qa, qw, (uint32_t *)buf);
    }
    r->words = (const uint32_t *)buf;
    /* dot = sum a*(u - o) = acc - o*sum(a);  qw = 1: sum a*(2u - 1) = 2*acc - sum(a) */
    r->corr = qw == 1 ? sum : sum * (1 << (qw - 1));
}

void mico_act_prep_packed(const uint32_t *a, uint32_t K, int qa, int qw, void *buf, mico_act_row *r) {
    prep(a, 0, K, qa, qw, buf, r);
}

void mico_act_prep_i8(const int8_t *v, uint32_t K, int qa, int qw, void *buf, mico_act_row *r) {
    prep(0, v, K, qa, qw, buf, r);
}

/* ---- blocks of rows ----------------------------------------------------------------
 * Each loop is written once for a block of R = 4 (or 1) weight rows: ROWS(X)
 * applies X to the row numbers of the block, and every per-row variable is
 * named after its row (s0..s3, w0..w3), so each lives in a register. */
#define ROWS4(X) X(0) X(1) X(2) X(3)
#define ROWS2(X) X(0) X(1)
#define ROWS1(X) X(0)

/* ---- i8 (8x8) ------------------------------------------------------------------ */
/* signed byte j of word v */
#define SB(v, j) ((int32_t)((v) << (24 - 8 * (j))) >> 24)

#define I8_DECL(r) const int8_t *w##r = w + (r) * ws; int32_t s##r = 0;
#define I8_MAC(r) s##r += x_ * w##r[o_];
#define I8_ADV(r) w##r += adv_;
#define I8_OUT(r) y[(r) * ys] = s##r;
#define I8_STEP(ROWS, v, j, o) { int32_t x_ = SB(v, j); const uint32_t o_ = (o); ROWS(I8_MAC) }
#define I8_WORD(ROWS, v, o)                                                          \
    I8_STEP(ROWS, v, 0, o) I8_STEP(ROWS, v, 1, (o) + 1) I8_STEP(ROWS, v, 2, (o) + 2) \
    I8_STEP(ROWS, v, 3, (o) + 3)

/* int8 activation words a against int8 weight rows (stride ws bytes), nw words */
#define DEFINE_I8_BLOCK(NAME, ROWS)                                                  \
static void NAME(const uint32_t *a, const int8_t *w, uint32_t ws, uint32_t nw,     \
                 int32_t *y, uint32_t ys) {                                          \
    const uint32_t *end = a + (nw & ~3u);                                            \
    ROWS(I8_DECL)                                                                    \
    while (a != end) {                                                               \
        uint32_t v0 = a[0], v1 = a[1], v2 = a[2], v3 = a[3];                         \
        const uint32_t adv_ = 16u;                                                   \
        /* the four activation words first: no cache ping-pong with a weight row */  \
        __asm__ volatile("" : "+r"(v0), "+r"(v1), "+r"(v2), "+r"(v3) : : "memory");  \
        I8_WORD(ROWS, v0, 0) I8_WORD(ROWS, v1, 4) I8_WORD(ROWS, v2, 8) I8_WORD(ROWS, v3, 12) \
        a += 4;                                                                      \
        ROWS(I8_ADV)                                                                 \
    }                                                                                \
    for (nw &= 3u; nw; nw--) {                                                       \
        uint32_t v0 = *a++;                                                          \
        const uint32_t adv_ = 4u;                                                    \
        I8_WORD(ROWS, v0, 0)                                                         \
        ROWS(I8_ADV)                                                                 \
    }                                                                                \
    ROWS(I8_OUT)                                                                     \
}
DEFINE_I8_BLOCK(i8_block4, ROWS4)
DEFINE_I8_BLOCK(i8_block2, ROWS2)
DEFINE_I8_BLOCK(i8_block1, ROWS1)

/* ---- popcount (1x1) ------------------------------------------------------------ */
/* bytes of x each replaced by their popcount (0..8) */
static inline uint32_t pop_bytes(uint32_t x) {
    x = x - ((x >> 1) & 0x55555555u);
    x = (x & 0x33333333u) + ((x >> 2) & 0x33333333u);
    return (x + (x >> 4)) & 0x0F0F0F0Fu;
}

/* sum of the four bytes of x */
static inline uint32_t sum_bytes(uint32_t x) {
    x = (x & 0x00FF00FFu) + ((x >> 8) & 0x00FF00FFu);
    return (x + (x >> 16)) & 0xFFFFu;
}

#define P1_DECL(r) const uint32_t *w##r = w + (r) * ws; uint32_t d##r = 0, c##r;
#define P1_ZERO(r) c##r = 0;
#define P1_WORD(r) c##r += pop_bytes(x_ ^ *w##r++);
#define P1_SUM(r) d##r += sum_bytes(c##r);
#define P1_OUT(r) y[(r) * ys] = K - 2 * (int32_t)d##r;

/* byte counts add up over at most 31 words (31 * 8 <= 255) before the bytes
 * are summed */
#define DEFINE_POP1_BLOCK(NAME, ROWS)                                                \
static void NAME(const uint32_t *a, const uint32_t *w, uint32_t ws, uint32_t nw,   \
                 int32_t *y, uint32_t ys, int32_t K) {                               \
    ROWS(P1_DECL)                                                                    \
    while (nw) {                                                                     \
        uint32_t n = nw < 31u ? nw : 31u;                                            \
        nw -= n;                                                                     \
        ROWS(P1_ZERO)                                                                \
        do {                                                                         \
            uint32_t x_ = *a++;                                                      \
            ROWS(P1_WORD)                                                            \
        } while (--n);                                                               \
        ROWS(P1_SUM)                                                                 \
    }                                                                                \
    ROWS(P1_OUT)                                                                     \
}
DEFINE_POP1_BLOCK(pop1_block4, ROWS4)
DEFINE_POP1_BLOCK(pop1_block2, ROWS2)
DEFINE_POP1_BLOCK(pop1_block1, ROWS1)

/* ---- lanes (every other pair) -------------------------------------------------- */
/* weight words per loop iteration: 16 or more products per row */
#define UNROLL(qw) ((qw) == 8 ? 4u : (qw) == 4 ? 2u : 1u)

#define LN_DECL(r) const uint32_t *w##r = w + (r) * ws; uint32_t P##r = PINIT, acc##r = 0, x##r;
#define LN_LOAD(r) x##r = w##r[u_] ^ SIGNS(QW);
#define LN_MAC(r) P##r += a_ * ((x##r >> (QW * j_)) & MASK);
#define LN_FLUSH(r) acc##r += P##r >> S; P##r = PINIT;
#define LN_ADV(r) w##r += adv_;
#define LN_OUT(r) { int32_t d_ = s32(acc##r - flushes * (1u << (31u - S)));           \
                    y[(r) * ys] = (QW == 1 ? 2 * d_ : d_) - corr; }

/* prepared activation words ap against packed qw-bit weight rows (stride ws
 * words), nw words per row; QW, LANES and the flush period F are constants */
#define DEFINE_LANES_BLOCK(NAME, ROWS)                                               \
AI void NAME(const uint32_t *ap, const uint32_t *w, uint32_t ws, uint32_t K,        \
             int32_t *y, uint32_t ys, int32_t corr,                                  \
             const uint32_t QW, const uint32_t LANES, const uint32_t F) {            \
    const uint32_t J = 32u / QW / LANES, S = 32u - 32u / LANES, U = UNROLL(QW);      \
    const uint32_t PINIT = 0x80000000u | (1u << (S - 1u)), MASK = LMASK(QW, LANES);  \
    /* loop iterations per flush (F >= U), or words per flush inside one            \
     * (F < U: a power of two, so a flush also ends every iteration) */              \
    const uint32_t ITF = F >= U ? F / U : 1u, FIN = F >= U ? U : F >= 2u ? 2u : 1u;  \
    /* full words, then a last partial word of rem codes: its lanes 1.. hold \
     * codes >= J (padding when rem <= J), so only min(J, rem) multiplies */         \
    const uint32_t nfull = K / (32u / QW), rem = K % (32u / QW);                      \
    const uint32_t jlast = rem < J ? rem : J;                                        \
    uint32_t nit = nfull / U, tail = nfull % U, flushes = 0, u_, j_;                 \
    ROWS(LN_DECL)                                                                    \
    while (nit) {                                                                    \
        uint32_t c = nit < ITF ? nit : ITF, adv_ = U;                                \
        nit -= c;                                                                    \
        do {                                                                         \
            UNROLL_ALL                                                               \
            for (u_ = 0; u_ < U; u_++) {                                             \
                ROWS(LN_LOAD)                                                        \
                UNROLL_ALL                                                           \
                for (j_ = 0; j_ < J; j_++) {                                         \
                    uint32_t a_ = ap[u_ * J + j_];                                   \
                    ROWS(LN_MAC)                                                     \
                }                                                                    \
                if (F < U && (u_ + 1u) % FIN == 0u) {                                \
                    ROWS(LN_FLUSH)                                                   \
                    flushes++;                                                       \
                }                                                                    \
            }                                                                        \
            ap += U * J;                                                             \
            ROWS(LN_ADV)                                                             \
        } while (--c);                                                               \
        if (F >= U) {                                                                \
            ROWS(LN_FLUSH)                                                           \
            flushes++;                                                               \
        }                                                                            \
    }                                                                                \
    for (; tail; tail--) {                                                           \
        const uint32_t adv_ = 1u;                                                    \
        u_ = 0;                                                                      \
        ROWS(LN_LOAD)                                                                \
        UNROLL_ALL                                                                   \
        for (j_ = 0; j_ < J; j_++) {                                                 \
            uint32_t a_ = ap[j_];                                                    \
            ROWS(LN_MAC)                                                             \
        }                                                                            \
        ROWS(LN_FLUSH)                                                               \
        flushes++;                                                                   \
        ap += J;                                                                     \
        ROWS(LN_ADV)                                                                 \
    }                                                                                \
    if (rem) {                                                                       \
        u_ = 0;                                                                      \
        ROWS(LN_LOAD)                                                                \
        UNROLL_ALL                                                                   \
        for (j_ = 0; j_ < J; j_++) {                                                 \
            uint32_t a_;                                                             \
            if (j_ == jlast)                                                         \
                break;                                                               \
            a_ = ap[j_];                                                             \
            ROWS(LN_MAC)                                                             \
        }                                                                            \
        ROWS(LN_FLUSH)                                                               \
        flushes++;                                                                   \
    }                                                                                \
    /* every flush added the lane offset 2^(LW-1) */                                 \
    ROWS(LN_OUT)                                                                     \
}
DEFINE_LANES_BLOCK(lanes_block4, ROWS4)
DEFINE_LANES_BLOCK(lanes_block2, ROWS2)
DEFINE_LANES_BLOCK(lanes_block1, ROWS1)

/* ---- dispatch --------------------------------------------------------------------- */
typedef void (*rows_fn)(const mico_act_row *, const uint32_t *, uint32_t, uint32_t, int32_t *, uint32_t);

/* four weight rows per call of the block, then one at a time */
/* blocks of four weight rows, then two, then one */
#define DEFINE_ROWS(NAME, BLOCK)                                                     \
static void NAME(const mico_act_row *ar, const uint32_t *w, uint32_t ws, uint32_t count, \
                 int32_t *y, uint32_t ys) {                                          \
    const uint32_t *a = ar->words;                                                   \
    uint32_t nw = mico_words(ar->K, (uint32_t)ar->qw);                               \
    (void)nw;                                                                        \
    for (; count >= 4u; count -= 4u, w += 4u * ws, y += 4u * ys)                     \
        BLOCK(4);                                                                    \
    if (count >= 2u) {                                                               \
        BLOCK(2);                                                                    \
        count -= 2u, w += 2u * ws, y += 2u * ys;                                     \
    }                                                                                \
    if (count)                                                                       \
        BLOCK(1);                                                                    \
}

#define I8_BLOCK(n) i8_block##n(a, (const int8_t *)w, 4u * ws, nw, y, ys)
#define POP1_BLOCK(n) pop1_block##n(a, w, ws, nw, y, ys, (int32_t)ar->K)
DEFINE_ROWS(rows_i8, I8_BLOCK)
DEFINE_ROWS(rows_pop1, POP1_BLOCK)

#define DEFINE_LANES(QA, QW)                                                          \
    static void rows_##QA##_##QW(const mico_act_row *, const uint32_t *, uint32_t,    \
                                 uint32_t, int32_t *, uint32_t);                      \
    DEFINE_ROWS(rows_##QA##_##QW, LANES_BLOCK_##QA##_##QW)
#define LANES_BLOCK(n, QA, QW)                                                        \
    lanes_block##n(a, w, ws, ar->K, y, ys, ar->corr, QW, LANES_OF(QA, QW), FLUSH_OF(QA, QW))
#define LANES_BLOCK_1_2(n) LANES_BLOCK(n, 1, 2)
#define LANES_BLOCK_1_4(n) LANES_BLOCK(n, 1, 4)
#define LANES_BLOCK_1_8(n) LANES_BLOCK(n, 1, 8)
#define LANES_BLOCK_2_1(n) LANES_BLOCK(n, 2, 1)
#define LANES_BLOCK_2_2(n) LANES_BLOCK(n, 2, 2)
#define LANES_BLOCK_2_4(n) LANES_BLOCK(n, 2, 4)
#define LANES_BLOCK_2_8(n) LANES_BLOCK(n, 2, 8)
#define LANES_BLOCK_4_1(n) LANES_BLOCK(n, 4, 1)
#define LANES_BLOCK_4_2(n) LANES_BLOCK(n, 4, 2)
#define LANES_BLOCK_4_4(n) LANES_BLOCK(n, 4, 4)
#define LANES_BLOCK_4_8(n) LANES_BLOCK(n, 4, 8)
#define LANES_BLOCK_8_1(n) LANES_BLOCK(n, 8, 1)
#define LANES_BLOCK_8_2(n) LANES_BLOCK(n, 8, 2)
#define LANES_BLOCK_8_4(n) LANES_BLOCK(n, 8, 4)

DEFINE_LANES(1, 2) DEFINE_LANES(1, 4) DEFINE_LANES(1, 8)
DEFINE_LANES(2, 1) DEFINE_LANES(2, 2) DEFINE_LANES(2, 4) DEFINE_LANES(2, 8)
DEFINE_LANES(4, 1) DEFINE_LANES(4, 2) DEFINE_LANES(4, 4) DEFINE_LANES(4, 8)
DEFINE_LANES(8, 1) DEFINE_LANES(8, 2) DEFINE_LANES(8, 4)

/* indexed by log2(qa) * 4 + log2(qw) */
static const rows_fn rows_tab[16] = {
    rows_pop1, rows_1_2, rows_1_4, rows_1_8, rows_2_1, rows_2_2, rows_2_4, rows_2_8,
    rows_4_1, rows_4_2, rows_4_4, rows_4_8, rows_8_1, rows_8_2, rows_8_4, rows_i8,
};


void mico_dot_rows(const mico_act_row *a, const uint32_t *W, uint32_t wstride, uint32_t count,
                   int32_t *y, uint32_t ystride) {
    rows_tab[lg(a->qa) * 4u + lg(a->qw)](a, W, wstride, count, y, ystride);
}
