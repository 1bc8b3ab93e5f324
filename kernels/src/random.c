/* xorshift32 input generation for RUN_KERNEL. */
#include "mico_kernels.h"

uint32_t mico_xorshift32(uint32_t *state) {
    uint32_t x = *state;
    if (x == 0)
        x = 0x9E3779B9u;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    *state = x;
    return x;
}

void mico_fill_random(uint32_t *state, uint32_t *out, uint32_t rows, uint32_t L, int b) {
    uint32_t per = 32u / (uint32_t)b, nw = mico_words(L, (uint32_t)b);
    uint32_t sh = 32u - (uint32_t)b;
    uint32_t r, j, i;
    uint32_t x = *state;
    if (x == 0)
        x = 0x9E3779B9u;
    for (r = 0; r < rows; r++) {
        uint32_t left = L;
        for (j = 0; j < nw; j++) {
            uint32_t w = 0, n = left < per ? left : per;
            for (i = 0; i < n; i++) {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                w |= (x >> sh) << (i * (uint32_t)b);
            }
            left -= n;
            *out++ = w;
        }
    }
    *state = x;
}
