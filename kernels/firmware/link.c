/* Framing: COBS + CRC-32, the receive state machine and the reply cache. */
#include "link.h"
#include "hal.h"
#include "mico_kernels.h"

static uint8_t rx_enc[LINK_MAX_FRAME + LINK_MAX_FRAME / 254 + 8];
static uint8_t tx_enc[LINK_MAX_FRAME + LINK_MAX_FRAME / 254 + 8];
static uint32_t tx_enc_len;

size_t cobs_encode(const uint8_t *in, size_t n, uint8_t *out) {
    size_t o = 1, code_at = 0;
    uint8_t code = 1;
    for (size_t i = 0; i < n; i++) {
        if (in[i] == 0) {
            out[code_at] = code;
            code_at = o++;
            code = 1;
        } else {
            out[o++] = in[i];
            if (++code == 0xFF) {
                out[code_at] = code;
                code_at = o++;
                code = 1;
            }
        }
    }
    out[code_at] = code;
    return o;
}

/* returns decoded length or -1 on malformed input */
long cobs_decode(const uint8_t *in, size_t n, uint8_t *out, size_t cap) {
    size_t i = 0, o = 0;
    while (i < n) {
        uint8_t code = in[i++];
        if (code == 0) return -1;
        for (uint8_t k = 1; k < code; k++) {
            if (i >= n || o >= cap) return -1;
            out[o++] = in[i++];
        }
        if (code != 0xFF && i < n) {
            if (o >= cap) return -1;
            out[o++] = 0;
        }
    }
    return (long)o;
}

static void put_le32(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); p[2] = (uint8_t)(v >> 16); p[3] = (uint8_t)(v >> 24);
}

int link_recv(uint8_t *frame, uint32_t *len) {
    uint32_t n = 0;
    int overflow = 0;
    for (;;) {
        int c = hal_getc();
        if (c < 0) return LINK_CLOSED;
        if (c == 0) {
            if (n == 0) continue;          /* idle delimiters */
            if (overflow) return LINK_BAD;
            long d = cobs_decode(rx_enc, n, frame, LINK_MAX_FRAME);
            if (d < 7) return LINK_BAD;
            uint32_t crc = mico_crc32(0, frame, (size_t)d - 4);
            uint32_t got = (uint32_t)frame[d - 4] | ((uint32_t)frame[d - 3] << 8) |
                           ((uint32_t)frame[d - 2] << 16) | ((uint32_t)frame[d - 1] << 24);
            if (crc != got) return LINK_BAD;
            *len = (uint32_t)d - 4;
            return LINK_OK;
        }
        if (n < sizeof rx_enc) rx_enc[n++] = (uint8_t)c;
        else overflow = 1;
    }
}

void link_send(uint8_t *frame, uint32_t len) {
    /* frame has 4 spare bytes after len for the CRC */
    put_le32(frame + len, mico_crc32(0, frame, len));
    tx_enc_len = (uint32_t)cobs_encode(frame, len + 4, tx_enc);
    tx_enc[tx_enc_len++] = 0;
    hal_write(tx_enc, tx_enc_len);
    hal_flush();
}

/* A short frame that must not replace the reply cache: the BAD_FRAME answer
 * to damaged input.  Cached, it would answer the host's same-seq resend of a
 * request whose good reply was lost, again and again on a noisy line. */
void link_send_uncached(uint8_t *frame, uint32_t len) {
    uint8_t enc[72];
    if (len + 4u > 64u) return;
    put_le32(frame + len, mico_crc32(0, frame, len));
    size_t n = cobs_encode(frame, len + 4, enc);
    enc[n++] = 0;
    hal_write(enc, n);
    hal_flush();
}

void link_resend(void) {
    if (tx_enc_len) {
        hal_write(tx_enc, tx_enc_len);
        hal_flush();
    }
}
