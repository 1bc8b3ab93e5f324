/* Data movement of the layer IR: channel shuffle and the 1-D im2col that
 * turns a conv1d into a 1x1 conv2d. */
#include "mico_kernels.h"

void mico_channel_shuffle(const int8_t *X, int8_t *Y, uint32_t C, uint32_t HW, uint32_t G) {
    uint32_t Cg = C / G, g, k, p;
    for (g = 0; g < G; g++)
        for (k = 0; k < Cg; k++) {
            const int8_t *x = X + (g * Cg + k) * HW;
            int8_t *y = Y + (k * G + g) * HW;
            for (p = 0; p < HW; p++)
                y[p] = x[p];
        }
}

void mico_unfold1d(const int8_t *X, int8_t *Y, uint32_t C, uint32_t L, uint32_t KS, uint32_t S, uint32_t P) {
    uint32_t OL = (L + 2u * P - KS) / S + 1u, c, j, o;
    for (c = 0; c < C; c++, X += L)
        for (j = 0; j < KS; j++) {
            for (o = 0; o < OL; o++) {
                int32_t i = (int32_t)(o * S + j) - (int32_t)P;
                *Y++ = (i >= 0 && i < (int32_t)L) ? X[i] : 0;
            }
        }
}
