// Lean C++ testbench for Wishbone RISC-V cores (VexRiscv variants, user VexiiRiscv).
//
//   tb [options] FIRMWARE(.elf|.bin)
//     --mem-kib N         RAM size in KiB (default 2048)
//     --wait-states N     cycles every bus beat waits before its ACK (default 0 = same-cycle ACK)
//     --max-cycles N      stop with exit code 124 after N cycles in total (0 = no limit)
//     --max-busy-cycles N stop with exit code 124 after N cycles without reading an input byte (0 = no limit)
//     --stats             print cycles, wall time, time spent waiting for input and the
//                         simulation speed (cycles per second of non-waiting wall time) on stderr at exit
//
// Memory map (byte addresses): RAM at TB_RAM_BASE (the firmware is loaded there,
// an ELF at its physical addresses), MMIO at TB_MMIO_BASE:
//   +0x00 UART TX    (W: one byte to stdout; buffered, flushed at frame delimiters 0x00,
//                     when the core blocks on input, and at exit)
//   +0x04 UART RX    (R: next byte from stdin; blocks the simulation (no cycles pass)
//                     while none is buffered; EOF on stdin ends the simulation with status 0)
//   +0x08 FLUSH      (W: flush stdout)
//   +0x0C EXIT       (W: exit with this status)
//   +0x10 CYCLE_LO   (R: low 32 bits of the cycle counter; latches the high half)
//   +0x14 CYCLE_HI   (R: the latched high half)
//   +0x18 RAM_BASE   (R)
//   +0x1C RAM_SIZE   (R, bytes)
//   +0x20 DEBUG      (W: one byte to stderr)
//   +0x24 TRAP       (W: mcause; reports the trap with TRAP_EPC/TRAP_TVAL on stderr, exit 3)
//   +0x28 TRAP_EPC   (W)
//   +0x2C TRAP_TVAL  (W)
// A data access outside RAM and MMIO stops the simulation (exit 2, message on stderr);
// an instruction fetch outside RAM is answered with ERR (the core traps if it executes it).
//
// The port names come from -D macros (see rtl_sims/verilator.py): TB_IBUS / TB_DBUS are
// Wishbone signal prefixes (either may be absent: one bus then serves everything).
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>
#include <fcntl.h>
#include <unistd.h>

#include "Vcore.h"
#include "verilated.h"

#ifndef TB_RAM_BASE
#define TB_RAM_BASE 0x40000000u
#endif
#ifndef TB_MMIO_BASE
#define TB_MMIO_BASE 0xF0000000u
#endif
#ifndef TB_CLK
#define TB_CLK clk
#endif
#ifndef TB_RESET
#define TB_RESET reset
#endif
#ifndef TB_RESET_ACTIVE_LOW
#define TB_RESET_ACTIVE_LOW 0
#endif
#ifndef TB_WORD_ADDR
#define TB_WORD_ADDR 1
#endif

#define TB_CAT_(a, b) a##b
#define TB_CAT(a, b) TB_CAT_(a, b)

static Vcore *top;
static uint32_t *ram;
static uint32_t ram_words, ram_bytes;
static uint64_t cycles;
static uint64_t deadline = UINT64_MAX;      // min(max_cycles, last_input + max_busy)
static uint64_t max_cycles, max_busy;
static uint32_t cycle_hi_latch;
static uint32_t trap_epc, trap_tval;
static bool stats;
static std::chrono::steady_clock::time_point t_start;
static double idle_s;   // wall time blocked on stdin (the simulation is paused then)

static uint8_t outbuf[1 << 16];
static size_t out_len;
static uint8_t inbuf[1 << 16];
static size_t in_pos, in_len;

static void flush_out() {
    size_t off = 0;
    while (off < out_len) {
        ssize_t n = write(1, outbuf + off, out_len - off);
        if (n < 0) {
            if (errno == EINTR) continue;
            // the host went away: nothing left to talk to
            _exit(0);
        }
        off += (size_t)n;
    }
    out_len = 0;
}

static void print_stats() {
    if (!stats) return;
    double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_start).count();
    double busy = s - idle_s;
    fprintf(stderr, "tb: %llu cycles in %.3f s, %.3f s waiting for input, %.0f cycles/s\n",
            (unsigned long long)cycles, s, idle_s, busy > 0 ? (double)cycles / busy : 0.0);
}

[[noreturn]] static void finish(int code) {
    flush_out();
    print_stats();
    fflush(stderr);
    top->final();
    _exit(code);
}

static void put_out(uint8_t b) {
    outbuf[out_len++] = b;
    if (b == 0 || out_len == sizeof outbuf) flush_out();
}

static uint8_t get_in() {
    if (in_pos == in_len) {
        flush_out();   // the host must see our reply before it can send more
        ssize_t n;
        auto t0 = stats ? std::chrono::steady_clock::now() : std::chrono::steady_clock::time_point{};
        do { n = read(0, inbuf, sizeof inbuf); } while (n < 0 && errno == EINTR);
        if (stats) idle_s += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        if (n <= 0) finish(0);   // EOF on stdin: a clean end
        in_pos = 0;
        in_len = (size_t)n;
    }
    if (max_busy) {
        uint64_t d = cycles + max_busy;
        deadline = (max_cycles && max_cycles < d) ? max_cycles : d;
    }
    return inbuf[in_pos++];
}

static const char *cause_name(uint32_t c) {
    switch (c) {
    case 0: return "instruction address misaligned";
    case 1: return "instruction access fault";
    case 2: return "illegal instruction";
    case 3: return "breakpoint";
    case 4: return "load address misaligned";
    case 5: return "load access fault";
    case 6: return "store address misaligned";
    case 7: return "store access fault";
    case 11: return "environment call";
    default: return (c & 0x80000000u) ? "interrupt" : "exception";
    }
}

static uint32_t mmio_read(uint32_t off) {
    switch (off) {
    case 0x04: return get_in();
    case 0x10: cycle_hi_latch = (uint32_t)(cycles >> 32); return (uint32_t)cycles;
    case 0x14: return cycle_hi_latch;
    case 0x18: return TB_RAM_BASE;
    case 0x1C: return ram_bytes;
    default: return 0;
    }
}

static void mmio_write(uint32_t off, uint32_t v) {
    switch (off) {
    case 0x00: put_out((uint8_t)v); break;
    case 0x08: flush_out(); break;
    case 0x0C: finish((int)(v & 0xFF));
    case 0x20: fputc((int)(v & 0xFF), stderr); break;
    case 0x24:
        flush_out();
        fprintf(stderr, "tb: firmware trap: mcause=0x%08x (%s) mepc=0x%08x mtval=0x%08x at cycle %llu\n", v,
                cause_name(v), trap_epc, trap_tval, (unsigned long long)cycles);
        finish(3);
    case 0x28: trap_epc = v; break;
    case 0x2C: trap_tval = v; break;
    default: break;
    }
}

// One Wishbone beat: returns the read data; sets *err for an answered error.
static inline uint32_t access(uint32_t byte_addr, bool we, uint32_t wdata, uint32_t sel, bool fetch, bool *err) {
    uint32_t widx = (byte_addr - TB_RAM_BASE) >> 2;
    if (byte_addr - TB_RAM_BASE < ram_bytes) {
        if (!we) return ram[widx];
        if (sel == 0xF) {
            ram[widx] = wdata;
        } else {
            uint32_t m = ((sel & 1) ? 0xFFu : 0) | ((sel & 2) ? 0xFF00u : 0) | ((sel & 4) ? 0xFF0000u : 0) |
                         ((sel & 8) ? 0xFF000000u : 0);
            ram[widx] = (ram[widx] & ~m) | (wdata & m);
        }
        return 0;
    }
    if (byte_addr - TB_MMIO_BASE < 0x1000u && !fetch) {
        uint32_t off = (byte_addr - TB_MMIO_BASE) & ~3u;
        if (we) {
            mmio_write(off, wdata);
            return 0;
        }
        return mmio_read(off);
    }
    if (fetch) {
        *err = true;
        return 0;
    }
    flush_out();
    fprintf(stderr, "tb: bus error: data %s at 0x%08x (outside RAM 0x%08x..0x%08x and MMIO) at cycle %llu\n",
            we ? "write" : "read", byte_addr, TB_RAM_BASE, TB_RAM_BASE + ram_bytes - 1,
            (unsigned long long)cycles);
    finish(2);
}

static uint32_t wait_states;

#if TB_WORD_ADDR
#define TB_BYTE_ADDR(a) ((uint32_t)(a) << 2)
#else
#define TB_BYTE_ADDR(a) ((uint32_t)(a) & ~3u)
#endif

// Serve one bus for this cycle (inputs are set before the rising edge).
#define SERVE_BUS(P, FETCH, WAITVAR)                                                                      \
    do {                                                                                                  \
        if (top->TB_CAT(P, CYC) && top->TB_CAT(P, STB)) {                                                 \
            if (WAITVAR < wait_states) {                                                                  \
                WAITVAR++;                                                                                \
            } else {                                                                                      \
                WAITVAR = 0;                                                                              \
                bool err_ = false;                                                                        \
                uint32_t d_ = access(TB_BYTE_ADDR(top->TB_CAT(P, ADR)), top->TB_CAT(P, WE),               \
                                     top->TB_CAT(P, DAT_MOSI), top->TB_CAT(P, SEL), FETCH, &err_);        \
                top->TB_CAT(P, DAT_MISO) = d_;                                                            \
                if (err_) top->TB_CAT(P, ERR) = 1;                                                        \
                else top->TB_CAT(P, ACK) = 1;                                                             \
            }                                                                                             \
        }                                                                                                 \
    } while (0)

static bool load_elf(const std::vector<uint8_t> &f) {
    if (f.size() < 52 || memcmp(f.data(), "\x7f" "ELF", 4) != 0) return false;
    if (f[4] != 1) {
        fprintf(stderr, "tb: only 32-bit ELF files are supported\n");
        exit(2);
    }
    auto rd32 = [&](size_t o) { uint32_t v; memcpy(&v, &f[o], 4); return v; };
    auto rd16 = [&](size_t o) { uint16_t v; memcpy(&v, &f[o], 2); return v; };
    uint32_t phoff = rd32(28);
    uint16_t phentsize = rd16(42), phnum = rd16(44);
    for (unsigned i = 0; i < phnum; i++) {
        size_t ph = phoff + (size_t)i * phentsize;
        if (ph + 32 > f.size()) break;
        if (rd32(ph) != 1) continue;  // PT_LOAD
        uint32_t off = rd32(ph + 4), paddr = rd32(ph + 12), filesz = rd32(ph + 16), memsz = rd32(ph + 20);
        if (paddr - TB_RAM_BASE > ram_bytes || memsz > ram_bytes - (paddr - TB_RAM_BASE) ||
            (size_t)off + filesz > f.size()) {
            fprintf(stderr, "tb: ELF segment at 0x%08x (+%u bytes) does not fit RAM 0x%08x (+%u bytes)\n", paddr,
                    memsz, TB_RAM_BASE, ram_bytes);
            exit(2);
        }
        memcpy((uint8_t *)ram + (paddr - TB_RAM_BASE), &f[off], filesz);
    }
    return true;
}

int main(int argc, char **argv) {
    uint64_t mem_kib = 2048;
    const char *fw = nullptr;
    for (int i = 1; i < argc; i++) {
        std::string a = argv[i];
        auto num = [&](const char *name) -> uint64_t {
            if (i + 1 >= argc) {
                fprintf(stderr, "tb: %s needs a value\n", name);
                exit(2);
            }
            return strtoull(argv[++i], nullptr, 0);
        };
        if (a == "--mem-kib") mem_kib = num("--mem-kib");
        else if (a == "--wait-states") wait_states = (uint32_t)num("--wait-states");
        else if (a == "--max-cycles") max_cycles = num("--max-cycles");
        else if (a == "--max-busy-cycles") max_busy = num("--max-busy-cycles");
        else if (a == "--stats") stats = true;
        else if (a.size() && a[0] == '+') continue;  // Verilator plusargs
        else if (a.size() && a[0] == '-') {
            fprintf(stderr, "tb: unknown option %s\n", a.c_str());
            exit(2);
        } else fw = argv[i];
    }
    if (!fw) {
        fprintf(stderr, "usage: %s [--mem-kib N] [--wait-states N] [--max-cycles N] [--max-busy-cycles N] [--stats] FIRMWARE\n",
                argv[0]);
        exit(2);
    }
    if (mem_kib < 64 || mem_kib > (1u << 20) || (uint64_t)TB_RAM_BASE + mem_kib * 1024 > TB_MMIO_BASE) {
        fprintf(stderr, "tb: --mem-kib %llu out of range (64 .. %u)\n", (unsigned long long)mem_kib,
                (unsigned)((TB_MMIO_BASE - TB_RAM_BASE) / 1024));
        exit(2);
    }
    ram_bytes = (uint32_t)(mem_kib * 1024);
    ram_words = ram_bytes / 4;
    ram = (uint32_t *)calloc(ram_words, 4);

    std::vector<uint8_t> image;
    {
        FILE *fp = fopen(fw, "rb");
        if (!fp) {
            fprintf(stderr, "tb: cannot open %s: %s\n", fw, strerror(errno));
            exit(2);
        }
        uint8_t buf[1 << 16];
        size_t n;
        while ((n = fread(buf, 1, sizeof buf, fp)) > 0) image.insert(image.end(), buf, buf + n);
        fclose(fp);
    }
    if (!load_elf(image)) {
        if (image.size() > ram_bytes) {
            fprintf(stderr, "tb: firmware (%zu bytes) larger than RAM (%u bytes)\n", image.size(), ram_bytes);
            exit(2);
        }
        memcpy(ram, image.data(), image.size());
    }
    if (max_cycles) deadline = max_cycles;
    if (max_busy && (!max_cycles || max_busy < max_cycles)) deadline = max_busy;

    auto ctx = std::make_unique<VerilatedContext>();
    ctx->commandArgs(argc, argv);
    top = new Vcore{ctx.get()};
#ifdef TB_RESET_VECTOR
    top->TB_RESET_VECTOR = TB_RESET_VECTOR_VALUE;
#endif
    top->TB_RESET = TB_RESET_ACTIVE_LOW ? 0 : 1;
    for (int i = 0; i < 16; i++) {
        top->TB_CLK = 0;
        top->eval();
        top->TB_CLK = 1;
        top->eval();
    }
    top->TB_RESET = TB_RESET_ACTIVE_LOW ? 1 : 0;
    t_start = std::chrono::steady_clock::now();

#ifdef TB_IBUS
    uint32_t iwait = 0;
#endif
#ifdef TB_DBUS
    uint32_t dwait = 0;
#endif
    for (;;) {
        top->TB_CLK = 0;
#ifdef TB_IBUS
        top->TB_CAT(TB_IBUS, ACK) = 0;
        top->TB_CAT(TB_IBUS, ERR) = 0;
#endif
#ifdef TB_DBUS
        top->TB_CAT(TB_DBUS, ACK) = 0;
        top->TB_CAT(TB_DBUS, ERR) = 0;
#endif
        top->eval();
#if defined(TB_IBUS) && defined(TB_DBUS)
        SERVE_BUS(TB_IBUS, true, iwait);
        SERVE_BUS(TB_DBUS, false, dwait);
#elif defined(TB_IBUS)
        SERVE_BUS(TB_IBUS, false, iwait);
#else
        SERVE_BUS(TB_DBUS, false, dwait);
#endif
        top->TB_CLK = 1;
        top->eval();
        if (++cycles >= deadline) {
            flush_out();
            fprintf(stderr, "tb: cycle limit reached: %llu cycles%s\n", (unsigned long long)cycles,
                    (max_cycles && cycles >= max_cycles) ? " in total" : " without reading input");
            finish(124);
        }
    }
}
