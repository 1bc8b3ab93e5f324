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
#include "mico_limits.h"

/* Under AddressSanitizer (the fuzzed host build) the arena's free space and the
 * gaps between tensors are poisoned, so a kernel or model that writes past its
 * buffer is caught at the first byte. */
#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#define ARENA_POISON(p, n) ASAN_POISON_MEMORY_REGION((p), (size_t)(n))
#define ARENA_UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION((p), (size_t)(n))
#else
#define ARENA_POISON(p, n) ((void)(p), (void)(n))
#define ARENA_UNPOISON(p, n) ((void)(p), (void)(n))
#endif

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
    mico_requant_clip, mico_add, mico_copy_i8, mico_channel_shuffle, mico_unfold1d, mico_maxpool_pad,
    mico_avgpool_pad, mico_adaptive_avgpool, mico_gconv2d,
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

/* ---- the tensor arena ---------------------------------------------------------
 * A bump allocator, 8-byte aligned, 64-bit size arithmetic, ARENA_GAP bytes
 * between tensors (poisoned under ASan).  harness-side tests mirror this
 * accounting (tests/helpers/oracle.py) to predict ERR_DOES_NOT_FIT exactly. */
#define ARENA_GAP 16u
typedef struct { uint8_t *base; uint64_t size, used; } arena_t;
static uint64_t arena_dirty = UINT64_MAX;   /* bytes handed out since the last arena_open */

static arena_t arena_open(void) {
    uint8_t *base; uint32_t size;
    hal_arena(&base, &size);
    ARENA_POISON(base, arena_dirty < size ? arena_dirty : size);
    arena_dirty = 0;
    arena_t a = { base, size, 0 };
    return a;
}

static void *take(arena_t *a, uint64_t bytes) {
    uint64_t at = (a->used + ARENA_GAP + 7u) & ~(uint64_t)7u;
    if (a->used > a->size || bytes > a->size || at > a->size - bytes) { a->used = a->size + 1; return 0; }
    a->used = at + bytes;
    if (a->used > arena_dirty) arena_dirty = a->used;
    ARENA_UNPOISON(a->base + at, bytes);
    return a->base + at;
}

/* ---- request validation ------------------------------------------------------------
 * Every size a request implies is computed in 64-bit arithmetic and checked
 * against mico_limits.h before anything is allocated or written; harness/spec.py
 * (KernelSpec) applies the same rules in the same order, so a spec the host
 * accepts is never refused here as impossible, only as too large for this
 * device (ERR_DOES_NOT_FIT). */
typedef struct { uint8_t code; const char *msg; } refusal;   /* code 0: accepted */
static const refusal accepted = { 0, 0 };
static refusal refuse(uint8_t code, const char *msg) { refusal r = { code, msg }; return r; }

/* *acc *= x if the product stays <= limit.  32-bit: acc <= limit < 2^31 and the
 * test divides instead of multiplying, so nothing wraps (and rv32 needs no
 * 64-bit division routine for it). */
static int mul_within(uint32_t *acc, uint32_t x, uint32_t limit) {
    if (x != 0 && *acc > limit / x) return 0;
    *acc *= x;
    return 1;
}
/* a * b * c * d <= MICO_MAX_ELEMENTS */
static int elements_ok(uint32_t a, uint32_t b, uint32_t c, uint32_t d) {
    uint32_t n = 1;
    return mul_within(&n, a, MICO_MAX_ELEMENTS) && mul_within(&n, b, MICO_MAX_ELEMENTS) &&
           mul_within(&n, c, MICO_MAX_ELEMENTS) && mul_within(&n, d, MICO_MAX_ELEMENTS);
}

static refusal check_matmul(const uint32_t *d) {
    for (int i = 0; i < 3; i++)
        if (d[i] < 1 || d[i] > MICO_MAX_DIM) return refuse(ERR_BAD_REQUEST, "matmul needs 1 <= N, M, K <= MICO_MAX_DIM");
    if (d[2] > MICO_MAX_REDUCTION) return refuse(ERR_BAD_REQUEST, "reduction length exceeds MICO_MAX_REDUCTION");
    if (!elements_ok(d[0], d[2], 1, 1) || !elements_ok(d[1], d[2], 1, 1) || !elements_ok(d[0], d[1], 1, 1))
        return refuse(ERR_BAD_REQUEST, "a tensor exceeds MICO_MAX_ELEMENTS");
    return accepted;
}

static refusal check_conv(const mico_conv_shape *s) {
    const uint32_t f[8] = { s->N, s->C, s->H, s->W, s->K, s->KS, s->S, s->G };
    for (int i = 0; i < 8; i++)
        if (f[i] < 1 || f[i] > MICO_MAX_DIM)
            return refuse(ERR_BAD_REQUEST, "conv2d sizes, kernel, stride and groups must be 1..MICO_MAX_DIM");
    if (s->P > MICO_MAX_DIM) return refuse(ERR_BAD_REQUEST, "conv2d padding exceeds MICO_MAX_DIM");
    if (s->C % s->G || s->K % s->G) return refuse(ERR_BAD_REQUEST, "conv2d groups must divide C and K");
    uint64_t hp64 = (uint64_t)s->H + 2u * (uint64_t)s->P, wp64 = (uint64_t)s->W + 2u * (uint64_t)s->P;
    if (hp64 > MICO_MAX_DIM || wp64 > MICO_MAX_DIM) return refuse(ERR_BAD_REQUEST, "conv2d padded input exceeds MICO_MAX_DIM");
    uint32_t hp = (uint32_t)hp64, wp = (uint32_t)wp64;   /* every size is < 2^31 from here on */
    if (hp < s->KS || wp < s->KS) return refuse(ERR_BAD_REQUEST, "conv2d kernel larger than the padded input");
    uint32_t red = s->C / s->G;
    if (!mul_within(&red, s->KS, MICO_MAX_REDUCTION) || !mul_within(&red, s->KS, MICO_MAX_REDUCTION))
        return refuse(ERR_BAD_REQUEST, "reduction length exceeds MICO_MAX_REDUCTION");
    uint32_t oh = (hp - s->KS) / s->S + 1u, ow = (wp - s->KS) / s->S + 1u;
    if (!elements_ok(s->N, s->C, s->H, s->W) || !elements_ok(s->K, red, 1, 1) || !elements_ok(s->N, s->K, oh, ow))
        return refuse(ERR_BAD_REQUEST, "a tensor exceeds MICO_MAX_ELEMENTS");
    return accepted;
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
    if (op != OP_MATMUL && op != OP_CONV2D) { send_error(seq, ERR_UNSUPPORTED, "unknown op"); return; }
    if (nd != (op == OP_MATMUL ? 3u : 9u)) {
        send_error(seq, ERR_BAD_REQUEST, op == OP_MATMUL ? "matmul needs 3 dims" : "conv2d needs 9 dims");
        return;
    }
    mico_conv_shape cs = { d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7], d[8] };
    refusal why = op == OP_MATMUL ? check_matmul(d) : check_conv(&cs);
    if (why.code) { send_error(seq, why.code, why.msg); return; }
    if (warmup < HAL_MIN_WARMUP) warmup = HAL_MIN_WARMUP;
    uint32_t total = warmup + repeats;

    /* every count below MICO_MAX_ELEMENTS after the checks above: 32-bit counts,
     * 64-bit byte sizes */
    uint32_t a_rows, a_len, w_rows, w_len, outs, scratch_bytes;
    if (op == OP_MATMUL) {
        a_rows = d[0]; a_len = d[2]; w_rows = d[1]; w_len = d[2];
        outs = d[0] * d[1];
        scratch_bytes = mico_matmul_scratch(d[2]);
    } else {
        a_rows = cs.N * cs.C; a_len = cs.H * cs.W;
        w_rows = cs.K; w_len = cs.C / cs.G * cs.KS * cs.KS;
        outs = cs.N * cs.K * mico_conv_out_h(&cs) * mico_conv_out_w(&cs);
        scratch_bytes = mico_conv_scratch(&cs);
    }
    arena_t ar = arena_open();
    uint32_t *A = take(&ar, 4ull * a_rows * mico_words(a_len, qa));
    uint32_t *Wt = take(&ar, 4ull * w_rows * mico_words(w_len, qw));
    int32_t *Y = take(&ar, 4ull * outs);
    void *scratch = take(&ar, scratch_bytes);
    uint64_t *tv = take(&ar, 8ull * total);
    if (ar.used > ar.size) { send_error(seq, ERR_DOES_NOT_FIT, "tensors do not fit the device arena"); return; }

    uint32_t state = seed;
    mico_fill_random(&state, A, a_rows, a_len, qa);
    mico_fill_random(&state, Wt, w_rows, w_len, qw);
    /* warm-up and timed runs share one loop, so every run follows the same code
     * path; nothing but the kernel call lies between the two timer reads */
    if (op == OP_MATMUL) {
        for (uint32_t r = 0; r < total; r++) {
            uint64_t t0 = hal_timer();
            BENCH_MATMUL(A, Wt, Y, d[0], d[1], d[2], qa, qw, scratch);
            tv[r] = hal_timer() - t0;
        }
    } else {
        for (uint32_t r = 0; r < total; r++) {
            uint64_t t0 = hal_timer();
            BENCH_CONV2D(A, Wt, Y, &cs, qa, qw, scratch);
            tv[r] = hal_timer() - t0;
        }
    }
    reply_runs(seq, Y, outs, tv + warmup, repeats);
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

/* The buffers RUN_MODEL hands the entry, taken in one order by MODEL_COMMIT
 * (to refuse a model that cannot run) and by RUN_MODEL. */
typedef struct { int32_t *out; uint64_t *times; int8_t *in; uint8_t *scratch; } model_bufs;
static int model_take(arena_t *ar, model_bufs *b) {
    b->out = take(ar, 4ull * model_hdr.out_count);
    b->times = take(ar, 8ull * ((uint64_t)model_hdr.n_layers + 1u));
    b->in = take(ar, model_hdr.in_count);
    b->scratch = take(ar, model_hdr.scratch_bytes);
    return ar->used <= ar->size;
}

/* Every field of a received image against the image and the device: the
 * entry must lie in the code after the header, aligned as model_api.h says,
 * with room for an instruction; the buffers must fit the arena and the reply one frame.  What
 * the code does is the model's own business (a model is code the host built). */
static refusal check_model(uint32_t len) {
    const mico_model_header *h = &model_hdr;
    if (h->magic != MICO_MODEL_MAGIC || h->abi != MICO_MODEL_ABI)
        return refuse(ERR_MODEL_INVALID, "not a mico model image for this ABI");
    if (h->image_size != len) return refuse(ERR_MODEL_INVALID, "model image size differs from the bytes received");
    if (h->entry_offset < sizeof(mico_model_header) || h->entry_offset % MICO_MODEL_ENTRY_ALIGN || h->entry_offset > len - 4u)
        return refuse(ERR_MODEL_INVALID, "model entry lies outside the image's code");
    if (h->in_count > hal_max_payload()) return refuse(ERR_DOES_NOT_FIT, "model input larger than one frame");
    if (h->n_layers > 0xFFFFu || 4ull * h->out_count + 8ull * h->n_layers + 32u > hal_max_payload())
        return refuse(ERR_DOES_NOT_FIT, "model reply larger than one frame");
    arena_t ar = arena_open();
    model_bufs b;
    if (!model_take(&ar, &b)) return refuse(ERR_DOES_NOT_FIT, "model buffers do not fit the device arena");
    return accepted;
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
    refusal why = check_model(model_len);
    if (why.code) { send_error(seq, why.code, why.msg); return; }
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
    arena_t ar = arena_open();
    model_bufs b;
    if (!model_take(&ar, &b)) { send_error(seq, ERR_DOES_NOT_FIT, "model buffers do not fit the device arena"); return; }
    for (uint32_t i = 0; i < n; i++) b.in[i] = (int8_t)p[i];
    mico_model_entry entry = (mico_model_entry)(void *)(code_base + model_hdr.entry_offset);
    uint64_t t0 = hal_timer();
    int32_t rc = entry(&api, b.in, b.out, b.times, b.scratch);
    uint64_t t1 = hal_timer();
    if (rc != 0) { send_error(seq, ERR_MODEL_INVALID, "model entry returned an error"); return; }
    begin(REQ_RUN_MODEL | REP_OFFSET, seq);
    w32(model_hdr.out_count);
    for (uint32_t i = 0; i < model_hdr.out_count; i++) w32((uint32_t)b.out[i]);
    w16(model_hdr.n_layers);
    w64(t1 - t0);
    for (uint32_t i = 0; i < model_hdr.n_layers; i++) w64(b.times[i]);
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
