/* Integer-only requantisation between layers (TFLite/CMSIS-NN style).
 * The loop lives in eltwise.c (mico_requant_clip, which also serves ReLU6);
 * without an upper clamp of its own the range is the out_bits one. */
#include "mico_kernels.h"

void mico_requant(const int32_t *acc, int8_t *out, uint32_t count,
                  uint32_t channels, uint32_t inner,
                  const int32_t *bias, const int32_t *mult, const uint8_t *shift,
                  int relu, int out_bits) {
    mico_requant_clip(acc, out, count, channels, inner, bias, mult, shift, relu, out_bits, 127);
}
