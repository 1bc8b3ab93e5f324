/*
 * ABI between the bench firmware and a generated model blob (mpq/codegen.py).
 *
 * A model is generated C compiled position-independent into a flat binary:
 * a mico_model_header at offset 0, code and constant weights after it.  The
 * firmware copies it into executable RAM (LOAD_MODEL) and calls the entry
 * with a table of kernel functions, so the model runs exactly the kernels
 * that RUN_KERNEL measured and one firmware build serves every model.
 */
#ifndef MICO_MODEL_API_H
#define MICO_MODEL_API_H
#include <stdint.h>
#include "mico_kernels.h"

#define MICO_MODEL_MAGIC 0x4D43494Du /* "MICM" */
#define MICO_MODEL_ABI 2
/* The entry is the first function of the code, which starts at a 16-byte
 * boundary after the header (the model linker script, blob.ld); the loader refuses any
 * other entry_offset (inside the header, misaligned, past the image). */
#define MICO_MODEL_ENTRY_ALIGN 16u

typedef struct mico_api {
    uint32_t abi;
    uint64_t (*timer)(void);
    void (*pack)(const int8_t *vals, uint32_t L, int b, uint32_t *out);
    uint32_t (*matmul_scratch)(uint32_t K);
    void (*matmul)(const uint32_t *A, const uint32_t *W, int32_t *Y, uint32_t N, uint32_t M,
                   uint32_t K, int qa, int qw, void *scratch);
    uint32_t (*conv_scratch)(const mico_conv_shape *s);
    void (*conv2d)(const uint32_t *X, const uint32_t *Wt, int32_t *Y, const mico_conv_shape *s,
                   int qa, int qw, void *scratch);
    void (*requant)(const int32_t *acc, int8_t *out, uint32_t count, uint32_t channels, uint32_t inner,
                    const int32_t *bias, const int32_t *mult, const uint8_t *shift, int relu, int out_bits);
    void (*maxpool)(const int8_t *X, int8_t *Y, uint32_t N, uint32_t C, uint32_t H, uint32_t W,
                    uint32_t KS, uint32_t S);
    void (*avgpool)(const int8_t *X, int8_t *Y, uint32_t N, uint32_t C, uint32_t H, uint32_t W,
                    uint32_t KS, uint32_t S);
    /* ABI 2: the model zoo's ops (mico_kernels.h, "model-zoo kernels") */
    void (*requant_clip)(const int32_t *acc, int8_t *out, uint32_t count, uint32_t channels, uint32_t inner,
                         const int32_t *bias, const int32_t *mult, const uint8_t *shift, int relu, int out_bits,
                         int32_t hi);
    void (*add)(const int8_t *x1, const int8_t *x2, int8_t *y, uint32_t n, int32_t m1, int32_t m2,
                uint32_t shift, int relu, int out_bits, int32_t hi);
    void (*copy)(const int8_t *src, int8_t *dst, uint32_t n);
    void (*channel_shuffle)(const int8_t *X, int8_t *Y, uint32_t C, uint32_t HW, uint32_t G);
    void (*unfold1d)(const int8_t *X, int8_t *Y, uint32_t C, uint32_t L, uint32_t KS, uint32_t S, uint32_t P);
    void (*maxpool_pad)(const int8_t *X, int8_t *Y, const mico_pool_shape *s);
    void (*avgpool_pad)(const int8_t *X, int8_t *Y, const mico_pool_shape *s);
    void (*adaptive_avgpool)(const int8_t *X, int8_t *Y, uint32_t C, uint32_t H, uint32_t W, uint32_t OH,
                             uint32_t OW);
    void (*gconv2d)(const int8_t *X, const uint32_t *Wt, int32_t *Y, const mico_conv_shape *s, int qw,
                    void *scratch);
} mico_api;

typedef int32_t (*mico_model_entry)(const mico_api *api, const int8_t *input, int32_t *output,
                                     uint64_t *layer_times, uint8_t *scratch);

typedef struct mico_model_header {
    uint32_t magic;          /* MICO_MODEL_MAGIC */
    uint32_t abi;            /* MICO_MODEL_ABI */
    uint32_t entry_offset;   /* byte offset of the mico_model_entry */
    uint32_t image_size;     /* bytes of the whole blob */
    uint32_t in_count;       /* int8 input values per inference */
    uint32_t out_count;      /* int32 outputs */
    uint32_t n_layers;       /* entries written to layer_times */
    uint32_t scratch_bytes;  /* bytes of scratch the entry needs */
} mico_model_header;

#endif
