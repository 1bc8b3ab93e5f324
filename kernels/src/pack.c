/* Bit packing of b-bit codes along a row (DESIGN.md section 3). */
#include "mico_kernels.h"

int mico_bits_ok(int b) {
    return b == 1 || b == 2 || b == 4 || b == 8;
}

/* code of a value: b=1 -> (v >= 0), b>=2 -> low b bits (two's complement) */
static inline uint32_t code_of(int8_t v, int b) {
    if (b == 1)
        return v >= 0 ? 1u : 0u;
    return (uint32_t)(uint8_t)v & ((1u << b) - 1u);
}

void mico_pack(const int8_t *vals, uint32_t L, int b, uint32_t *out) {
    uint32_t per = 32u / (uint32_t)b;
    uint32_t nw = mico_words(L, (uint32_t)b);
    uint32_t j, i, base = 0;
    for (j = 0; j < nw; j++, base += per) {
        uint32_t w = 0, n = L - base;
        if (n > per)
            n = per;
        for (i = 0; i < n; i++)
            w |= code_of(vals[base + i], b) << (i * (uint32_t)b);
        out[j] = w;
    }
}

/* values of the b-bit codes of whole words, then of the last word's first
 * codes: constant shifts per width (the conv stem path unpacks its weights
 * on every call) */
#define DEFINE_UNPACK(B, VAL)                                                          \
static void unpack_##B(const uint32_t *in, uint32_t L, int8_t *vals) {                \
    const uint32_t per = 32u / (B);                                                    \
    uint32_t n, i, x;                                                                  \
    for (n = L / per; n; n--, vals += per) {                                           \
        x = *in++;                                                                     \
        for (i = 0; i < per; i++)                                                      \
            vals[i] = (int8_t)(VAL);                                                   \
    }                                                                                  \
    if (L % per) {                                                                     \
        x = *in;                                                                       \
        for (i = 0; i < L % per; i++)                                                  \
            vals[i] = (int8_t)(VAL);                                                   \
    }                                                                                  \
}
DEFINE_UNPACK(1, (int32_t)((x >> i) & 1u) * 2 - 1)
DEFINE_UNPACK(2, (int32_t)(((x >> (2u * i)) & 3u) ^ 2u) - 2)
DEFINE_UNPACK(4, (int32_t)(((x >> (4u * i)) & 15u) ^ 8u) - 8)
DEFINE_UNPACK(8, (int32_t)(((x >> (8u * i)) & 255u) ^ 128u) - 128)

void mico_unpack(const uint32_t *in, uint32_t L, int b, int8_t *vals) {
    switch (b) {
    case 1: unpack_1(in, L, vals); break;
    case 2: unpack_2(in, L, vals); break;
    case 4: unpack_4(in, L, vals); break;
    default: unpack_8(in, L, vals); break;
    }
}
