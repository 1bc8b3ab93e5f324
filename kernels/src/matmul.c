/* Bit-packed mixed-precision matmul: Y[n][m] = sum_k A[n,k] * W[m,k].
 * Each A row is prepared once (kernels/src/rows.c) and dotted with all M
 * weight rows by the (qa, qw) pair's loop. */
#include "mico_kernels.h"

/* the largest mico_act_prep_bytes(K, qa, qw) over all pairs */
uint32_t mico_matmul_scratch(uint32_t K) {
    return 2u * ((K + 31u) & ~31u);
}

void mico_matmul(const uint32_t *A, const uint32_t *W, int32_t *Y,
                 uint32_t N, uint32_t M, uint32_t K, int qa, int qw,
                 void *scratch) {
    uint32_t wa = mico_words(K, (uint32_t)qa), ww = mico_words(K, (uint32_t)qw), n;
    mico_act_row a;
    for (n = 0; n < N; n++, A += wa, Y += M) {
        mico_act_prep_packed(A, K, qa, qw, scratch, &a);
        mico_dot_rows(&a, W, ww, M, Y, 1u);
    }
}
