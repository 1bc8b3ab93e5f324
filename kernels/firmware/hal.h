/*
 * Hardware abstraction for the bench firmware: the only file that differs
 * between the host build, the RTL testbench build and a LiteX board.
 */
#ifndef MICO_HAL_H
#define MICO_HAL_H
#include <stdint.h>
#include <stddef.h>

void hal_init(void);
int hal_getc(void);                              /* blocking; -1 when the link is closed */
void hal_write(const uint8_t *buf, size_t len);  /* blocking, whole buffer */
void hal_flush(void);
uint64_t hal_timer(void);
uint8_t hal_timer_unit(void);                    /* 0 = cycles, 1 = ns */
uint32_t hal_timer_hz(void);
void hal_arena(uint8_t **base, uint32_t *size);  /* tensor memory for RUN_KERNEL and models */
void hal_code_region(uint8_t **base, uint32_t *size); /* executable memory for model blobs */
void hal_sync_code(void *base, uint32_t size);   /* make freshly written code executable */
uint32_t hal_max_payload(void);
const char *hal_target_id(void);
const char *hal_isa(void);
void hal_exit(int code);
#endif
