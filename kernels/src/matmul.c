/* Bit-packed mixed-precision matmul: Y[n][m] = sum_k A[n,k] * W[m,k]. */
#include "mico_kernels.h"

uint32_t mico_matmul_scratch(uint32_t K) {
    return (K + 31u) & ~31u;
}

void mico_matmul(const uint32_t *A, const uint32_t *W, int32_t *Y,
                 uint32_t N, uint32_t M, uint32_t K, int qa, int qw,
                 void *scratch) {
    uint32_t wa = mico_words(K, (uint32_t)qa), ww = mico_words(K, (uint32_t)qw);
    uint32_t n, m, k, Kp = (K + 31u) & ~31u;
    int8_t *a = (int8_t *)scratch;

    if (qa == qw && (qa == 1 || qa == 2)) {
        for (n = 0; n < N; n++, A += wa, Y += M) {
            const uint32_t *w = W;
            if (qa == 1)
                for (m = 0; m < M; m++, w += ww)
                    Y[m] = mico_dot_packed_b1(A, w, K);
            else
                for (m = 0; m < M; m++, w += ww)
                    Y[m] = mico_dot_packed_b2(A, w, K);
        }
        return;
    }
    for (n = 0; n < N; n++, A += wa, Y += M) {
        const uint32_t *w = W;
        /* the A row once, as int8, zero over the pad codes */
        mico_unpack(A, K, qa, a);
        for (k = K; k < Kp; k++)
            a[k] = 0;
        for (m = 0; m < M; m++, w += ww)
            Y[m] = mico_dot_i8_packed(a, w, K, qw);
    }
}
