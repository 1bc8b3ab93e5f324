/* Host HAL: stdin/stdout pipes, CLOCK_MONOTONIC nanoseconds, mmap'd memory. */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <errno.h>
#include <sys/mman.h>
#include "hal.h"
#include "link.h"

#ifndef HOST_ARENA_MB
#define HOST_ARENA_MB 512
#endif
#define CODE_BYTES (8u << 20)

static uint8_t inbuf[1 << 16];
static size_t in_pos, in_len;
static uint8_t *arena, *code;

void hal_init(void) {
    arena = mmap(NULL, (size_t)HOST_ARENA_MB << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    code = mmap(NULL, CODE_BYTES, PROT_READ | PROT_WRITE | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (arena == MAP_FAILED || code == MAP_FAILED) _exit(3);
}

int hal_getc(void) {
    if (in_pos == in_len) {
        ssize_t n;
        do { n = read(0, inbuf, sizeof inbuf); } while (n < 0 && errno == EINTR);
        if (n <= 0) return -1;
        in_pos = 0;
        in_len = (size_t)n;
    }
    return inbuf[in_pos++];
}

void hal_write(const uint8_t *buf, size_t len) {
    while (len) {
        ssize_t n = write(1, buf, len);
        if (n < 0) {
            if (errno == EINTR) continue;
            _exit(4);   /* host went away */
        }
        buf += n;
        len -= (size_t)n;
    }
}

void hal_flush(void) {}

uint64_t hal_timer(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}
uint8_t hal_timer_unit(void) { return 1; }
uint32_t hal_timer_hz(void) { return 1000000000u; }
void hal_arena(uint8_t **base, uint32_t *size) {
    *base = arena;
    *size = (uint32_t)((uint64_t)HOST_ARENA_MB << 20);
}
void hal_code_region(uint8_t **base, uint32_t *size) { *base = code; *size = CODE_BYTES; }
void hal_sync_code(void *base, uint32_t size) { __builtin___clear_cache((char *)base, (char *)base + size); }
uint32_t hal_max_payload(void) { return LINK_MAX_PAYLOAD; }
const char *hal_target_id(void) { return "host"; }
const char *hal_isa(void) {
#if defined(__x86_64__)
    return "x86_64";
#elif defined(__aarch64__)
    return "aarch64";
#else
    return "unknown";
#endif
}
void hal_exit(int code_) { _exit(code_); }
