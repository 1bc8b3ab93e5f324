#ifndef MICO_LINK_H
#define MICO_LINK_H
#include <stdint.h>
#include <stddef.h>

#ifndef LINK_MAX_FRAME
#define LINK_MAX_FRAME 16400u   /* type + seq + payload (<= 16384) + crc */
#endif
#define LINK_MAX_PAYLOAD (LINK_MAX_FRAME - 16u)

enum { LINK_OK = 0, LINK_BAD = 1, LINK_CLOSED = 2 };

size_t cobs_encode(const uint8_t *in, size_t n, uint8_t *out);
long cobs_decode(const uint8_t *in, size_t n, uint8_t *out, size_t cap);
int link_recv(uint8_t *frame, uint32_t *len);   /* frame without CRC; LINK_BAD on CRC/COBS error */
void link_send(uint8_t *frame, uint32_t len);   /* appends CRC (needs 4 spare bytes), encodes, sends, caches */
void link_send_uncached(uint8_t *frame, uint32_t len); /* short frame, reply cache untouched */
void link_resend(void);                         /* the last reply again (duplicate request) */
#endif
