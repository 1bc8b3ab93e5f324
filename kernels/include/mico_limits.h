/*
 * Limits of a kernel request: the one place that says which shapes can exist
 * on any mico device.  The bench firmware (kernels/firmware/bench.c) refuses
 * anything beyond them with ERR_BAD_REQUEST before it allocates or writes a
 * byte; the host (harness/spec.py) reads these #defines when it is imported and
 * refuses the same shapes with the same reasons before it sends or computes
 * anything.  Keep every value a plain decimal literal with a `u` suffix: the
 * host parses this file.
 *
 * Whether a valid shape fits one device's tensor arena is a separate question
 * (ERR_DOES_NOT_FIT): that depends on the device.
 */
#ifndef MICO_LIMITS_H
#define MICO_LIMITS_H

/* Every shape field, and a conv2d's padded extents H+2P and W+2P: the kernels
 * index rows and planes in int32 arithmetic (2^31 - 1). */
#define MICO_MAX_DIM 2147483647u

/* The reduction length (matmul K, conv2d C/G*KS*KS) whose int32 accumulator
 * cannot overflow at 8x8 bits: (2^31 - 1) / (128 * 128). */
#define MICO_MAX_REDUCTION 131071u

/* Elements of any one tensor (activations, weights, outputs): element and
 * word indices stay below 2^31 in the kernels' 32-bit arithmetic. */
#define MICO_MAX_ELEMENTS 2147483647u

#endif
