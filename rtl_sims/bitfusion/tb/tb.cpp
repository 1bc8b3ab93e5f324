// BitFusion testbench: the Verilated accelerator (bf_top) + a DRAM model,
// driven over stdin/stdout with the bench protocol's frames
//   COBS( type:u8 | seq:u16le | payload | crc32le ) 0x00
// (harness/protocol.py).  HELLO, RESET and BYE are the bench protocol's; the
// accelerator requests are:
//   0x20 INFO   -> u32 R, C, IB_BYTES, WB_BYTES, OB_BYTES, DMA_BITS, IMEM_DEPTH, u64 DRAM bytes
//   0x21 WRITE  u32 word address, data bytes (multiple of 4)     -> u32 words
//   0x22 RUN    u32 latency, u64 max cycles, u16 repeats, u32 out word address,
//               u32 out words, u32 n instructions, u64 instructions[n]
//            -> u16 repeats, {u64 cycles, u32 crc32(out)}[repeats],
//               u64 perf (compute, load, store, beats), out words (last repeat)
//   0x23 READ   u32 word address, u32 words -> words
// The DRAM model accepts one request (a DMA_BITS beat) per cycle and returns
// read data `latency` cycles after the request was accepted, in order; writes
// take the bytes whose strobe is set (dram_req_wstrb, one bit per byte).
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <string>
#include <vector>
#include <unistd.h>
#include <errno.h>

#include "Vcore.h"
#include "verilated.h"

#ifndef TB_R
#error "TB_R (array rows) must be defined"
#endif

static const uint32_t WPB = TB_DMA_BITS / 32;

enum { REQ_HELLO = 1, REQ_RESET = 6, REQ_BYE = 7, REQ_INFO = 0x20, REQ_WRITE = 0x21, REQ_RUN = 0x22,
       REQ_READ = 0x23, REP_ERROR = 0xFF };
enum { ERR_BAD_FRAME = 1, ERR_BAD_REQUEST = 2, ERR_UNSUPPORTED = 3, ERR_DOES_NOT_FIT = 4 };

// ---------------------------------------------------------------- CRC-32 (zlib)
static uint32_t crc_table[256];
static void crc_init() {
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        crc_table[i] = c;
    }
}
static uint32_t crc32(uint32_t crc, const uint8_t *p, size_t n) {
    crc = ~crc;
    for (size_t i = 0; i < n; i++) crc = crc_table[(crc ^ p[i]) & 0xFF] ^ (crc >> 8);
    return ~crc;
}

// ---------------------------------------------------------------- framing
static std::vector<uint8_t> last_reply;   // encoded, for duplicate requests
static uint32_t last_seq = 0xFFFFFFFFu;
static uint8_t last_type = 0;

static void write_all(const uint8_t *p, size_t n) {
    while (n) {
        ssize_t k = write(1, p, n);
        if (k < 0) {
            if (errno == EINTR) continue;
            _exit(4);
        }
        p += k;
        n -= (size_t)k;
    }
}

static void cobs_encode(const std::vector<uint8_t> &in, std::vector<uint8_t> &out) {
    out.clear();
    out.reserve(in.size() + in.size() / 254 + 4);
    size_t code_at = 0;
    out.push_back(0);
    uint8_t code = 1;
    for (uint8_t b : in) {
        if (b == 0) {
            out[code_at] = code;
            code_at = out.size();
            out.push_back(0);
            code = 1;
        } else {
            out.push_back(b);
            if (++code == 0xFF) {
                out[code_at] = code;
                code_at = out.size();
                out.push_back(0);
                code = 1;
            }
        }
    }
    out[code_at] = code;
    out.push_back(0);
}

static bool cobs_decode(const uint8_t *in, size_t n, std::vector<uint8_t> &out) {
    out.clear();
    out.reserve(n);
    size_t i = 0;
    while (i < n) {
        uint8_t code = in[i++];
        if (code == 0 || i + code - 1 > n) return false;
        out.insert(out.end(), in + i, in + i + code - 1);
        i += code - 1;
        if (code != 0xFF && i < n) out.push_back(0);
    }
    return true;
}

struct Reply {
    std::vector<uint8_t> b;
    Reply(uint8_t type, uint16_t seq) { b.push_back(type); w16(seq); }
    void w8(uint32_t v) { b.push_back((uint8_t)v); }
    void w16(uint32_t v) { w8(v); w8(v >> 8); }
    void w32(uint32_t v) { w16(v); w16(v >> 16); }
    void w64(uint64_t v) { w32((uint32_t)v); w32((uint32_t)(v >> 32)); }
    void wstr(const std::string &s) {
        size_t n = s.size() < 255 ? s.size() : 255;
        w8((uint32_t)n);
        b.insert(b.end(), s.begin(), s.begin() + n);
    }
    void bytes(const void *p, size_t n) { b.insert(b.end(), (const uint8_t *)p, (const uint8_t *)p + n); }
    void send() {
        w32(crc32(0, b.data(), b.size()));
        cobs_encode(b, last_reply);
        write_all(last_reply.data(), last_reply.size());
    }
};

static void send_error(uint16_t seq, uint8_t code, const std::string &msg) {
    Reply r(REP_ERROR, seq);
    r.w8(code);
    r.wstr(msg);
    r.send();
}

static uint32_t rd32(const uint8_t *p) { return p[0] | (p[1] << 8) | (p[2] << 16) | ((uint32_t)p[3] << 24); }
static uint16_t rd16(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }
static uint64_t rd64(const uint8_t *p) { return rd32(p) | ((uint64_t)rd32(p + 4) << 32); }

// ---------------------------------------------------------------- the model
static VerilatedContext *ctx;
static Vcore *top;
static std::vector<uint32_t> dram;
static uint64_t dram_max_words;

static inline void set_rsp(const uint32_t *w) {
#if TB_DMA_BITS > 64
    for (uint32_t i = 0; i < WPB; i++) top->dram_rsp_data[i] = w[i];
#elif TB_DMA_BITS == 64
    top->dram_rsp_data = (uint64_t)w[0] | ((uint64_t)w[1] << 32);
#else
    top->dram_rsp_data = w[0];
#endif
}
static inline void get_wdata(uint32_t *w) {
#if TB_DMA_BITS > 64
    for (uint32_t i = 0; i < WPB; i++) w[i] = top->dram_req_wdata[i];
#elif TB_DMA_BITS == 64
    uint64_t v = top->dram_req_wdata;
    w[0] = (uint32_t)v;
    w[1] = (uint32_t)(v >> 32);
#else
    w[0] = top->dram_req_wdata;
#endif
}

static inline void get_wstrb(uint8_t *m) {
#if TB_DMA_BITS > 512
    for (uint32_t i = 0; i < TB_DMA_BITS / 8; i++) m[i] = (top->dram_req_wstrb[i / 32] >> (i % 32)) & 1;
#else
    uint64_t v = (uint64_t)top->dram_req_wstrb;
    for (uint32_t i = 0; i < TB_DMA_BITS / 8; i++) m[i] = (v >> i) & 1;
#endif
}

static void edge() {
    top->clk = 1;
    top->eval();
    top->clk = 0;
    top->eval();
}

static void hw_reset() {
    top->rst = 1;
    top->start = 0;
    top->imem_we = 0;
    top->dram_req_ready = 1;
    top->dram_rsp_valid = 0;
    for (int i = 0; i < 4; i++) edge();
    top->rst = 0;
    edge();
}

struct Pending {
    uint64_t due;
    uint64_t beat;
};

// one program run; returns 0 ok, 1 cycle limit, 2 accelerator error, 3 address out of range
static int run_once(uint32_t latency, uint64_t max_cycles, uint64_t *cycles, std::string &why) {
    std::deque<Pending> q;
    uint32_t zero[32] = {0};
    top->start = 1;
    edge();
    top->start = 0;
    uint64_t cyc = 0;
    while (top->running) {
        // inputs for this cycle
        if (!q.empty() && q.front().due <= cyc) {
            uint64_t beat = q.front().beat;
            q.pop_front();
            top->dram_rsp_valid = 1;
            if ((beat + 1) * WPB <= dram.size()) set_rsp(&dram[beat * WPB]);
            else set_rsp(zero);
        } else {
            top->dram_rsp_valid = 0;
        }
        // the (registered) request presented this cycle is accepted at this edge
        bool req = top->dram_req_valid;
        bool we = top->dram_req_we;
        uint64_t beat = top->dram_req_addr;
        uint32_t wd[32];
        uint8_t strb[128];
        if (req && we) {
            get_wdata(wd);
            get_wstrb(strb);
        }
        top->clk = 1;
        top->eval();
        if (req) {
            if ((beat + 1) * WPB > dram.size()) {
                why = "DRAM access beyond the loaded image at beat " + std::to_string(beat);
                hw_reset();
                return 3;
            }
            if (we) {
                uint8_t *dst = (uint8_t *)&dram[beat * WPB];
                const uint8_t *src = (const uint8_t *)wd;
                for (uint32_t i = 0; i < WPB * 4; i++)
                    if (strb[i]) dst[i] = src[i];
            }
            else q.push_back({cyc + latency, beat});
        }
        top->clk = 0;
        top->eval();
        cyc++;
        if (cyc > max_cycles) {
            why = "no HALT within " + std::to_string(max_cycles) + " cycles";
            hw_reset();
            return 1;
        }
    }
    top->dram_rsp_valid = 0;
    if (top->error) {
        why = "accelerator error code " + std::to_string((int)top->error);
        hw_reset();
        return 2;
    }
    *cycles = top->cycles;
    return 0;
}

static void do_hello(uint16_t seq) {
    Reply r(REQ_HELLO | 0x80, seq);
    r.w16(1);                      // fw version
    r.w16(1);                      // protocol version
    uint64_t ram = dram_max_words * 4;
    r.w32(ram > 0xFFFFFFFFull ? 0xFFFFFFFFu : (uint32_t)ram);
    r.w32(0x7FFFFFFFu);            // max payload: frames grow as needed
    r.w8(0);                       // cycles
    r.w32(500000000u);             // 500 MHz (the published BitFusion clock)
    r.w16(0x3);                    // matmul, conv2d
    r.w16(0xFFFF);                 // every (qa, qw) of {1,2,4,8}^2 (1 bit runs as 2-bit signed)
    r.w32(1);
    r.w32(TB_IMEM_DEPTH * 8);
    r.wstr("bitfusion-rtl");
    char isa[160];
    snprintf(isa, sizeof isa, "bitfusion %dx%d FU, IBUF %d B, WBUF %d B, OBUF %d B, DRAM %d bit/cycle",
             TB_R, TB_C, TB_IB_BYTES, TB_WB_BYTES, TB_OB_BYTES, TB_DMA_BITS);
    r.wstr(isa);
    r.wstr(std::string("verilator ") + VERILATOR_VERSION);
    r.send();
}

static void do_info(uint16_t seq) {
    Reply r(REQ_INFO | 0x80, seq);
    r.w32(TB_R); r.w32(TB_C); r.w32(TB_IB_BYTES); r.w32(TB_WB_BYTES); r.w32(TB_OB_BYTES);
    r.w32(TB_DMA_BITS); r.w32(TB_IMEM_DEPTH);
    r.w64(dram_max_words * 4);
    r.send();
}

static void do_write(uint16_t seq, const uint8_t *p, size_t n) {
    if (n < 4 || (n - 4) % 4) { send_error(seq, ERR_BAD_REQUEST, "WRITE needs an address and whole words"); return; }
    uint64_t addr = rd32(p), words = (n - 4) / 4;
    if (addr + words > dram_max_words) { send_error(seq, ERR_DOES_NOT_FIT, "tensors do not fit the DRAM model"); return; }
    if (dram.size() < addr + words) dram.resize(addr + words, 0);
    memcpy(&dram[addr], p + 4, words * 4);
    Reply r(REQ_WRITE | 0x80, seq);
    r.w32((uint32_t)words);
    r.send();
}

static void do_read(uint16_t seq, const uint8_t *p, size_t n) {
    if (n < 8) { send_error(seq, ERR_BAD_REQUEST, "READ needs an address and a length"); return; }
    uint64_t addr = rd32(p), words = rd32(p + 4);
    if (addr + words > dram.size()) { send_error(seq, ERR_BAD_REQUEST, "READ beyond the DRAM image"); return; }
    Reply r(REQ_READ | 0x80, seq);
    r.bytes(&dram[addr], words * 4);
    r.send();
}

static void do_run(uint16_t seq, const uint8_t *p, size_t n) {
    if (n < 30) { send_error(seq, ERR_BAD_REQUEST, "RUN payload too short"); return; }
    uint32_t latency = rd32(p);
    uint64_t max_cycles = rd64(p + 4);
    uint32_t repeats = rd16(p + 12);
    uint64_t out_addr = rd32(p + 14), out_words = rd32(p + 18);
    uint32_t ni = rd32(p + 22);
    if (n != 26 + 8ull * ni) { send_error(seq, ERR_BAD_REQUEST, "RUN program length mismatch"); return; }
    if (ni > TB_IMEM_DEPTH) { send_error(seq, ERR_DOES_NOT_FIT, "program longer than the instruction memory"); return; }
    if (repeats == 0 || latency == 0) { send_error(seq, ERR_BAD_REQUEST, "repeats and latency must be >= 1"); return; }
    if (out_addr + out_words > dram_max_words) { send_error(seq, ERR_DOES_NOT_FIT, "outputs do not fit the DRAM model"); return; }
    if (dram.size() < out_addr + out_words) dram.resize(out_addr + out_words, 0);
    for (uint32_t i = 0; i < ni; i++) {
        top->imem_we = 1;
        top->imem_addr = i;
        top->imem_wdata = rd64(p + 26 + 8ull * i);
        edge();
    }
    top->imem_we = 0;
    std::vector<uint64_t> cyc(repeats);
    std::vector<uint32_t> crcs(repeats);
    for (uint32_t k = 0; k < repeats; k++) {
        // poison the output region: every output must be written by the accelerator
        for (uint64_t i = 0; i < out_words; i++) dram[out_addr + i] = 0xDEADBEEFu;
        std::string why;
        int rc = run_once(latency, max_cycles, &cyc[k], why);
        if (rc) { send_error(seq, ERR_BAD_REQUEST, why); return; }
        crcs[k] = crc32(0, (const uint8_t *)&dram[out_addr], out_words * 4);
    }
    Reply r(REQ_RUN | 0x80, seq);
    r.w16(repeats);
    for (uint32_t k = 0; k < repeats; k++) { r.w64(cyc[k]); r.w32(crcs[k]); }
    r.w64(top->perf_compute); r.w64(top->perf_load); r.w64(top->perf_store); r.w64(top->perf_beats);
    r.bytes(&dram[out_addr], out_words * 4);
    r.send();
}

int main(int argc, char **argv) {
    crc_init();
    ctx = new VerilatedContext;
    ctx->commandArgs(argc, argv);
    top = new Vcore{ctx};
    uint64_t dram_mib = 256;
    for (int i = 1; i < argc; i++)
        if (!strncmp(argv[i], "--dram-mib=", 11)) dram_mib = strtoull(argv[i] + 11, nullptr, 10);
    dram_max_words = dram_mib << 18;
    hw_reset();

    std::vector<uint8_t> enc, frame;
    static uint8_t buf[1 << 16];
    for (;;) {
        ssize_t got = read(0, buf, sizeof buf);
        if (got < 0 && errno == EINTR) continue;
        if (got <= 0) break;
        uint8_t *p = buf, *end = buf + got;
        while (p < end) {
            uint8_t *z = (uint8_t *)memchr(p, 0, (size_t)(end - p));
            if (!z) { enc.insert(enc.end(), p, end); break; }
            enc.insert(enc.end(), p, z);
            p = z + 1;
            if (enc.empty()) continue;
            bool ok = cobs_decode(enc.data(), enc.size(), frame) && frame.size() >= 7;
            enc.clear();
            if (ok) {
                size_t d = frame.size();
                ok = crc32(0, frame.data(), d - 4) == rd32(&frame[d - 4]);
            }
            if (!ok) { send_error(0xFFFF, ERR_BAD_FRAME, "bad frame"); continue; }
            uint8_t type = frame[0];
            uint16_t seq = rd16(&frame[1]);
            if (seq == last_seq && type == last_type) { write_all(last_reply.data(), last_reply.size()); continue; }
            last_seq = seq;
            last_type = type;
            const uint8_t *pl = frame.data() + 3;
            size_t n = frame.size() - 7;
            switch (type) {
            case REQ_HELLO: do_hello(seq); break;
            case REQ_INFO: do_info(seq); break;
            case REQ_WRITE: do_write(seq, pl, n); break;
            case REQ_READ: do_read(seq, pl, n); break;
            case REQ_RUN: do_run(seq, pl, n); break;
            case REQ_RESET: {
                hw_reset();
                Reply r(REQ_RESET | 0x80, seq);
                r.send();
                break;
            }
            case REQ_BYE: {
                Reply r(REQ_BYE | 0x80, seq);
                r.send();
                top->final();
                return 0;
            }
            default: send_error(seq, ERR_UNSUPPORTED, "unknown request type"); break;
            }
        }
    }
    top->final();
    return 0;
}
