/*
 * mico-hil bench protocol (DESIGN.md s2).  A frame on the wire is
 *   COBS( type:u8 | seq:u16le | payload | crc32le(type|seq|payload) ) 0x00
 * All integers little-endian.  The host is the only initiator; every request
 * gets exactly one reply frame carrying the request's seq.
 * harness/protocol.py holds the Python side; keep the two in step.
 */
#ifndef MICO_PROTO_H
#define MICO_PROTO_H

#define MICO_PROTO_VERSION 1
#define MICO_FW_VERSION 1

enum {
    REQ_HELLO = 0x01,        /* -> REP_HELLO */
    REQ_RUN_KERNEL = 0x02,   /* u8 op,u8 qa,u8 qw,u8 flags,u32 seed,u16 warmup,u16 repeats,u8 ndims,u32 dims[] */
    REQ_MODEL_DATA = 0x03,   /* u32 offset,u32 total, bytes */
    REQ_MODEL_COMMIT = 0x04, /* u32 crc32 of the whole blob */
    REQ_RUN_MODEL = 0x05,    /* int8 input values */
    REQ_RESET = 0x06,
    REQ_BYE = 0x07,          /* firmware exits (simulators, host) */
    REP_OFFSET = 0x80,       /* reply type = request type | 0x80 */
    REP_ERROR = 0xFF         /* u8 code, u8 len, message */
};

enum {
    ERR_BAD_FRAME = 1,   /* CRC/length/COBS error: the host resends the same seq */
    ERR_BAD_REQUEST = 2,
    ERR_UNSUPPORTED = 3,
    ERR_DOES_NOT_FIT = 4,
    ERR_NO_MODEL = 5,
    ERR_MODEL_INVALID = 6
};

enum { OP_MATMUL = 0, OP_CONV2D = 1 };

#endif
