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

void mico_unpack(const uint32_t *in, uint32_t L, int b, int8_t *vals) {
    uint32_t i;
    switch (b) {
    case 1:
        for (i = 0; i < L; i++)
            vals[i] = (int8_t)((int32_t)((in[i >> 5] >> (i & 31u)) & 1u) * 2 - 1);
        break;
    case 2:
        for (i = 0; i < L; i++)
            vals[i] = (int8_t)((int32_t)(((in[i >> 4] >> ((i & 15u) * 2u)) & 3u) ^ 2u) - 2);
        break;
    case 4:
        for (i = 0; i < L; i++)
            vals[i] = (int8_t)((int32_t)(((in[i >> 3] >> ((i & 7u) * 4u)) & 15u) ^ 8u) - 8);
        break;
    default: /* 8 */
        for (i = 0; i < L; i++)
            vals[i] = (int8_t)((int32_t)(((in[i >> 2] >> ((i & 3u) * 8u)) & 255u) ^ 128u) - 128);
        break;
    }
}
