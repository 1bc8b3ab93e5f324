/*
 * The bench firmware: a protocol server that runs kernels and models.
 * One build serves a whole sweep: shapes and bit-widths are request fields.
 */
#include <stdint.h>
#include "hal.h"
#include "link.h"
#include "proto.h"
#include "model_api.h"
#include "mico_kernels.h"

/* The MiCo SIMD build (vexriscv-mico) runs the CFU kernels, both for RUN_KERNEL
 * and for generated models (through the api table). */
#ifdef MICO_CFU
#define BENCH_MATMUL mico_matmul_simd
#define BENCH_CONV2D mico_conv2d_simd
#else
#define BENCH_MATMUL mico_matmul
#define BENCH_CONV2D mico_conv2d
#endif

/* Targets with caches and branch predictors (RTL) set this to 1: a timed run
 * then always follows a run of the same kernel, so repeats are identical. */
#ifndef HAL_MIN_WARMUP
#define HAL_MIN_WARMUP 0
#endif

static uint8_t rx[LINK_MAX_FRAME + 8];
static uint8_t tx[LINK_MAX_FRAME + 8];
static uint32_t last_seq = 0xFFFFFFFFu;
static uint8_t last_type;

/* model state */
static uint8_t *code_base;
static uint32_t code_size;
static uint32_t model_len;        /* bytes received so far (contiguous) */
static uint32_t model_total;
static int model_ready;
static mico_model_header model_hdr;

static const mico_api api = {
    MICO_MODEL_ABI, hal_timer, mico_pack, mico_matmul_scratch, BENCH_MATMUL, mico_conv_scratch,
    BENCH_CONV2D, mico_requant, mico_maxpool, mico_avgpool,
};

static uint32_t rd32(const uint8_t *p) {
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}
static uint16_t rd16(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }

/* reply builder */
static uint32_t tlen;
static void begin(uint8_t type, uint16_t seq) {
    tx[0] = type; tx[1] = (uint8_t)seq; tx[2] = (uint8_t)(seq >> 8);
    tlen = 3;
}
static void w8(uint32_t v) { tx[tlen++] = (uint8_t)v; }
static void w16(uint32_t v) { w8(v); w8(v >> 8); }
static void w32(uint32_t v) { w16(v); w16(v >> 16); }
static void w64(uint64_t v) { w32((uint32_t)v); w32((uint32_t)(v >> 32)); }
static void wstr(const char *s) {
    uint32_t n = 0;
    while (s[n] && n < 255) n++;
    w8(n);
    for (uint32_t i = 0; i < n; i++) w8((uint8_t)s[i]);
}
static void send(void) { link_send(tx, tlen); }

static void send_error(uint16_t seq, uint8_t code, const char *msg) {
    begin(REP_ERROR, seq);
    w8(code);
    wstr(msg);
    send();
}

static void do_hello(uint16_t seq) {
    uint8_t *base; uint32_t size;
    hal_arena(&base, &size);
    begin(REQ_HELLO | REP_OFFSET, seq);
    w16(MICO_FW_VERSION);
    w16(MICO_PROTO_VERSION);
    w32(size);
    w32(hal_max_payload());
    w8(hal_timer_unit());
    w32(hal_timer_hz());
    w16(0x3);      /* ops: matmul, conv2d */
    w16(0xFFFF);   /* all 16 (qa, qw) pairs of {1,2,4,8} */
    w32(MICO_KERNELS_VERSION);
    w32(code_size);
    wstr(hal_target_id());
    wstr(hal_isa());
#ifdef __VERSION__
    wstr("gcc " __VERSION__);
#else
    wstr("unknown compiler");
#endif
    send();
}

/* bump allocator over the arena, 8-byte aligned, 64-bit size arithmetic */
typedef struct { uint8_t *base; uint64_t size, used; } arena_t;
static void *take(arena_t *a, uint64_t bytes) {
    uint64_t at = (a->used + 7u) & ~(uint64_t)7u;
    if (at + bytes > a->size) { a->used = a->size + 1; return 0; }
    a->used = at + bytes;
    return a->base + at;
}

/* RUN_KERNEL reply: crc32 of the output, output count, repeats, per-repeat times */
static void reply_runs(uint16_t seq, const int32_t *Y, uint64_t outs, const uint64_t *times, uint32_t repeats) {
    begin(REQ_RUN_KERNEL | REP_OFFSET, seq);
    w32(mico_crc32(0, Y, (size_t)(4 * outs)));
    w32((uint32_t)outs);
    w16(repeats);
    for (uint32_t r = 0; r < repeats; r++) w64(times[r]);
    send();
}

static void do_run_kernel(uint16_t seq, const uint8_t *p, uint32_t n) {
    if (n < 13) { send_error(seq, ERR_BAD_REQUEST, "RUN_KERNEL payload too short"); return; }
    uint8_t op = p[0], qa = p[1], qw = p[2];
    uint32_t seed = rd32(p + 4);
    uint32_t warmup = rd16(p + 8), repeats = rd16(p + 10), nd = p[12];
    if (n < 13 + 4 * nd) { send_error(seq, ERR_BAD_REQUEST, "RUN_KERNEL dims truncated"); return; }
    uint32_t d[9] = {0};
    for (uint32_t i = 0; i < nd && i < 9; i++) d[i] = rd32(p + 13 + 4 * i);
    if (!mico_bits_ok(qa) || !mico_bits_ok(qw)) { send_error(seq, ERR_UNSUPPORTED, "bit-width not in {1,2,4,8}"); return; }
    if (repeats == 0 || 8u * repeats + 32u > hal_max_payload()) { send_error(seq, ERR_BAD_REQUEST, "repeats out of range"); return; }
    if (warmup < HAL_MIN_WARMUP) warmup = HAL_MIN_WARMUP;
    uint32_t total = warmup + repeats;
    uint64_t *tv;

    uint8_t *abase; uint32_t asize;
    hal_arena(&abase, &asize);
    arena_t ar = { abase, asize, 0 };
    uint32_t state = seed;
    uint64_t outs;
    uint32_t *A, *Wt; int32_t *Y; void *scratch;
    mico_conv_shape cs;

    if (op == OP_MATMUL) {
        if (nd != 3 || !d[0] || !d[1] || !d[2]) { send_error(seq, ERR_BAD_REQUEST, "matmul needs N,M,K >= 1"); return; }
        uint32_t N = d[0], M = d[1], K = d[2];
        outs = (uint64_t)N * M;
        A = take(&ar, 4ull * N * mico_words(K, qa));
        Wt = take(&ar, 4ull * M * mico_words(K, qw));
        Y = take(&ar, 4ull * outs);
        scratch = take(&ar, mico_matmul_scratch(K));
        tv = take(&ar, 8ull * total);
        if (ar.used > ar.size) { send_error(seq, ERR_DOES_NOT_FIT, "tensors do not fit the device arena"); return; }
        mico_fill_random(&state, A, N, K, qa);
        mico_fill_random(&state, Wt, M, K, qw);
        /* warm-up and timed runs share one loop, so every run follows the same code path */
        for (uint32_t r = 0; r < total; r++) {
            uint64_t t0 = hal_timer();
            BENCH_MATMUL(A, Wt, Y, N, M, K, qa, qw, scratch);
            tv[r] = hal_timer() - t0;
        }
        reply_runs(seq, Y, outs, tv + warmup, repeats);
    } else if (op == OP_CONV2D) {
        if (nd != 9) { send_error(seq, ERR_BAD_REQUEST, "conv2d needs 9 dims"); return; }
        cs.N = d[0]; cs.C = d[1]; cs.H = d[2]; cs.W = d[3]; cs.K = d[4];
        cs.KS = d[5]; cs.S = d[6]; cs.P = d[7]; cs.G = d[8];
        if (mico_conv_check(&cs)) { send_error(seq, ERR_BAD_REQUEST, "impossible conv2d shape"); return; }
        uint32_t OH = mico_conv_out_h(&cs), OW = mico_conv_out_w(&cs);
        uint32_t red = cs.C / cs.G * cs.KS * cs.KS;
        outs = (uint64_t)cs.N * cs.K * OH * OW;
        A = take(&ar, 4ull * cs.N * cs.C * mico_words(cs.H * cs.W, qa));
        Wt = take(&ar, 4ull * cs.K * mico_words(red, qw));
        Y = take(&ar, 4ull * outs);
        scratch = take(&ar, mico_conv_scratch(&cs));
        tv = take(&ar, 8ull * total);
        if (ar.used > ar.size) { send_error(seq, ERR_DOES_NOT_FIT, "tensors do not fit the device arena"); return; }
        mico_fill_random(&state, A, cs.N * cs.C, cs.H * cs.W, qa);
        mico_fill_random(&state, Wt, cs.K, red, qw);
        for (uint32_t r = 0; r < total; r++) {
            uint64_t t0 = hal_timer();
            BENCH_CONV2D(A, Wt, Y, &cs, qa, qw, scratch);
            tv[r] = hal_timer() - t0;
        }
        reply_runs(seq, Y, outs, tv + warmup, repeats);
    } else {
        send_error(seq, ERR_UNSUPPORTED, "unknown op");
    }
}

static void do_model_data(uint16_t seq, const uint8_t *p, uint32_t n) {
    if (n < 8) { send_error(seq, ERR_BAD_REQUEST, "MODEL_DATA payload too short"); return; }
    uint32_t off = rd32(p), total = rd32(p + 4), len = n - 8;
    if (total > code_size) { send_error(seq, ERR_DOES_NOT_FIT, "model image larger than the code region"); return; }
    if (off == 0) { model_len = 0; model_total = total; model_ready = 0; }
    if (total != model_total || off != model_len || (uint64_t)off + len > total) {
        send_error(seq, ERR_BAD_REQUEST, "MODEL_DATA out of order");
        return;
    }
    for (uint32_t i = 0; i < len; i++) code_base[off + i] = p[8 + i];
    model_len += len;
    begin(REQ_MODEL_DATA | REP_OFFSET, seq);
    w32(model_len);
    send();
}

static void do_model_commit(uint16_t seq, const uint8_t *p, uint32_t n) {
    if (n < 4) { send_error(seq, ERR_BAD_REQUEST, "MODEL_COMMIT payload too short"); return; }
    model_ready = 0;
    if (model_len != model_total || model_len < sizeof(mico_model_header)) {
        send_error(seq, ERR_MODEL_INVALID, "model image incomplete");
        return;
    }
    if (mico_crc32(0, code_base, model_len) != rd32(p)) {
        send_error(seq, ERR_MODEL_INVALID, "model image CRC mismatch");
        return;
    }
    const uint8_t *h = code_base;
    model_hdr.magic = rd32(h); model_hdr.abi = rd32(h + 4); model_hdr.entry_offset = rd32(h + 8);
    model_hdr.image_size = rd32(h + 12); model_hdr.in_count = rd32(h + 16); model_hdr.out_count = rd32(h + 20);
    model_hdr.n_layers = rd32(h + 24); model_hdr.scratch_bytes = rd32(h + 28);
    if (model_hdr.magic != MICO_MODEL_MAGIC || model_hdr.abi != MICO_MODEL_ABI ||
        model_hdr.entry_offset >= model_len || model_hdr.image_size != model_len) {
        send_error(seq, ERR_MODEL_INVALID, "not a mico model image for this ABI");
        return;
    }
    uint8_t *abase; uint32_t asize;
    hal_arena(&abase, &asize);
    uint64_t need = 4ull * model_hdr.out_count + 8ull * model_hdr.n_layers + model_hdr.in_count + model_hdr.scratch_bytes + 64;
    if (need > asize || 8u * model_hdr.n_layers + 4u * model_hdr.out_count + 32u > hal_max_payload()) {
        send_error(seq, ERR_DOES_NOT_FIT, "model buffers do not fit the device arena");
        return;
    }
    hal_sync_code(code_base, model_len);
    model_ready = 1;
    begin(REQ_MODEL_COMMIT | REP_OFFSET, seq);
    w32(model_hdr.in_count);
    w32(model_hdr.out_count);
    w32(model_hdr.n_layers);
    w32(model_hdr.scratch_bytes);
    send();
}

static void do_run_model(uint16_t seq, const uint8_t *p, uint32_t n) {
    if (!model_ready) { send_error(seq, ERR_NO_MODEL, "no model loaded"); return; }
    if (n != model_hdr.in_count) { send_error(seq, ERR_BAD_REQUEST, "input size differs from the model's"); return; }
    uint8_t *abase; uint32_t asize;
    hal_arena(&abase, &asize);
    arena_t ar = { abase, asize, 0 };
    int32_t *out = take(&ar, 4ull * model_hdr.out_count);
    uint64_t *times = take(&ar, 8ull * (model_hdr.n_layers + 1));
    int8_t *in = take(&ar, model_hdr.in_count);
    uint8_t *scratch = take(&ar, model_hdr.scratch_bytes);
    for (uint32_t i = 0; i < n; i++) in[i] = (int8_t)p[i];
    mico_model_entry entry = (mico_model_entry)(void *)(code_base + model_hdr.entry_offset);
    uint64_t t0 = hal_timer();
    int32_t rc = entry(&api, in, out, times, scratch);
    uint64_t t1 = hal_timer();
    if (rc != 0) { send_error(seq, ERR_MODEL_INVALID, "model entry returned an error"); return; }
    begin(REQ_RUN_MODEL | REP_OFFSET, seq);
    w32(model_hdr.out_count);
    for (uint32_t i = 0; i < model_hdr.out_count; i++) w32((uint32_t)out[i]);
    w16(model_hdr.n_layers);
    w64(t1 - t0);
    for (uint32_t i = 0; i < model_hdr.n_layers; i++) w64(times[i]);
    send();
}

int main(void) {
    hal_init();
    hal_code_region(&code_base, &code_size);
    for (;;) {
        uint32_t len;
        int r = link_recv(rx, &len);
        if (r == LINK_CLOSED) break;
        if (r == LINK_BAD) {
            /* answered outside the reply cache, which keeps the last real reply */
            begin(REP_ERROR, 0xFFFF);
            w8(ERR_BAD_FRAME);
            wstr("bad frame");
            link_send_uncached(tx, tlen);
            continue;
        }
        uint8_t type = rx[0];
        uint16_t seq = (uint16_t)(rx[1] | (rx[2] << 8));
        if (seq == last_seq && type == last_type) { link_resend(); continue; }
        last_seq = seq;
        last_type = type;
        const uint8_t *p = rx + 3;
        uint32_t n = len - 3;
        switch (type) {
        case REQ_HELLO: do_hello(seq); break;
        case REQ_RUN_KERNEL: do_run_kernel(seq, p, n); break;
        case REQ_MODEL_DATA: do_model_data(seq, p, n); break;
        case REQ_MODEL_COMMIT: do_model_commit(seq, p, n); break;
        case REQ_RUN_MODEL: do_run_model(seq, p, n); break;
        case REQ_RESET:
            model_ready = 0; model_len = 0; model_total = 0;
            begin(REQ_RESET | REP_OFFSET, seq); send();
            break;
        case REQ_BYE:
            begin(REQ_BYE | REP_OFFSET, seq); send();
            hal_exit(0);
            break;
        default: send_error(seq, ERR_UNSUPPORTED, "unknown request type"); break;
        }
    }
    hal_exit(0);
    return 0;
}
