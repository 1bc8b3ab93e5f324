/* Portable popcount and the popcount dot products for 1- and 2-bit rows. */
#include "mico_kernels.h"

uint32_t mico_popcount32(uint32_t x) {
    x = x - ((x >> 1) & 0x55555555u);
    x = (x & 0x33333333u) + ((x >> 2) & 0x33333333u);
    x = (x + (x >> 4)) & 0x0F0F0F0Fu;
    return (x * 0x01010101u) >> 24;
}

/* popcount of a word whose set bits are only at even positions (<= 16 bits) */
static inline uint32_t popcount_even(uint32_t x) {
    x = (x & 0x33333333u) + ((x >> 2) & 0x33333333u);
    x = (x + (x >> 4)) & 0x0F0F0F0Fu;
    return (x * 0x01010101u) >> 24;
}

/* values +-1: a*w = 1 - 2*(a xor w); pad bits of both rows are 0 so they
 * never differ and only the K real elements count */
int32_t mico_dot_packed_b1(const uint32_t *a, const uint32_t *w, uint32_t K) {
    uint32_t nw = mico_words(K, 1u), j, diff = 0;
    for (j = 0; j < nw; j++)
        diff += mico_popcount32(a[j] ^ w[j]);
    return (int32_t)K - 2 * (int32_t)diff;
}

/* 2-bit two's complement code (h,l) has value l - 2h, so
 * a*w = la*lw - 2*(la*hw + ha*lw) + 4*ha*hw, each term a popcount of ANDed
 * bit planes (planes kept at the even bit positions); zero pad codes add 0.
 * The two cross terms share one popcount: one at even, one at odd bits. */
int32_t mico_dot_packed_b2(const uint32_t *a, const uint32_t *w, uint32_t K) {
    uint32_t nw = mico_words(K, 2u), j;
    uint32_t ll = 0, cross = 0, hh = 0;
    for (j = 0; j < nw; j++) {
        uint32_t la = a[j] & 0x55555555u, ha = (a[j] >> 1) & 0x55555555u;
        uint32_t lw = w[j] & 0x55555555u, hw = (w[j] >> 1) & 0x55555555u;
        ll += popcount_even(la & lw);
        hh += popcount_even(ha & hw);
        cross += mico_popcount32((la & hw) | ((ha & lw) << 1));
    }
    return (int32_t)ll - 2 * (int32_t)cross + 4 * (int32_t)hh;
}

/* 1-bit dot product of a patch with zero padding: padding is the value 0,
 * which has no 1-bit code, so `m` marks the real elements (bit set) and only
 * they count: sum over m of (1 - 2*(a xor w)) = nvalid - 2*popcount((a^w)&m). */
int32_t mico_dot_packed_b1_masked(const uint32_t *a, const uint32_t *m, const uint32_t *w,
                                  uint32_t K, uint32_t nvalid) {
    uint32_t nw = mico_words(K, 1u), j, diff = 0;
    for (j = 0; j < nw; j++)
        diff += mico_popcount32((a[j] ^ w[j]) & m[j]);
    return (int32_t)nvalid - 2 * (int32_t)diff;
}
