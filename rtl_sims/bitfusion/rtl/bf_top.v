// BitFusion accelerator top: instruction sequencer, three engines, buffers, array.
//
// Program: 64-bit instructions in IMEM (loaded through imem_* before `start`).
//   [63:60] opcode
//   HALT     0   wait until every engine is idle and the array drained, then done
//   SETUP    1   [1:0] qa code, [3:2] qw code (0:2, 1:4, 2:8 bits), [4] act signed,
//                [5] wgt signed, [6] IBUF 2 slots, [7] WBUF 2 slots, [8] OBUF 2 slots
//                (waits for idle; empties the slot rings)
//   LOOP     2   [31:0] iteration count (>= 1): body runs up to the matching ENDLOOP
//   ENDLOOP  3
//   STRIDE   4   [58:56] address group g, [55:53] loop level l, [31:0] signed stride:
//                every address using group g moves by the stride per iteration of loop l
//   LD       5   {[55], [59]} 0: IBUF / 1: WBUF / 2: PBUF, [58:56] group, [54:32] words,
//                [31:0] DRAM word address (+ group offset): DRAM -> the next free slot of
//                that buffer (PBUF: a ring of 2 slots of the C columns' output-unit
//                parameters: bias, mult, shift | channel valid << 8)
//   ST       6   [58:56] group, [55:32] words, [31:0] DRAM word address: the oldest
//                finished OBUF slot -> DRAM, then the slot is free
//   COMPUTE  7   [58:56] IBUF group, [55:53] WBUF group, [52:50] acquire level,
//                [49:47] finish level, [46:44] IBUF release level, [43:41] WBUF release
//                level, [31:16] WBUF step base, [15:0] IBUF step base.
//                Streams CSHAPE.nt rows x CSHAPE.st steps through the array reading
//                the current IBUF/WBUF slots; "level L" conditions hold when every
//                enclosing loop at depth >= L is at its first (acquire) or last
//                (finish, release) iteration.  acquire: take a fresh OBUF slot and
//                overwrite it; finish: the OBUF slot is complete (ST may store it);
//                release: the IBUF/WBUF slot is free for the next LD.  [40:38]
//                PBUF release level (packed mode only; a finishing COMPUTE in packed
//                mode also waits for a loaded PBUF slot).
//   CSHAPE   8   [15:0] rows nt, [31:16] steps st, [47:32] IBUF steps per row
//   OSETUP   9   (waits for idle) [0] packed mode, [4:1] out_bits (0: int32 acc + bias),
//                [5] unsigned/signed, [6] ReLU, [8:7] pool (0 none, 1 max, 2 avg),
//                [16:9] rows per pooling window n, [22:17] / [42:23] avg reciprocal (k, m),
//                [43] in place.  In packed mode the COMPUTE that finishes a tile sends
//                every finished sum through the column's output unit; the code of the
//                pooling window ending at row i (window w) goes to bits (c*e mod 32) of
//                word (c*e div 32) of packed row w: slot word w*chw (chw = max(1, C*e/32))
//                or, in place, (w*n + n - 1)*C (over the int32 partial sums of row i)
//   YSHAPE  10   [15:0] rows, [43:16] DRAM row pitch in bytes, [59:44] group block bytes
//   STP     11   [58:56] address group, [55:53] clip group, [41:32] chunk bytes, [31:0]
//                DRAM byte address: the oldest finished OBUF slot's packed rows -> DRAM,
//                row r at address + r * pitch, min(chunk, block - clip offset) bytes each
//                (byte strobes; the beats a row touches), then the slot is free
//
// Engines: the load DMA (LD), the store DMA (ST) and the compute engine
// (COMPUTE) each run their own queue in order; the sequencer dispatches in
// program order.  IBUF, WBUF and OBUF are rings of 1 or 2 slots (double
// buffering) whose slot states are the only synchronisation: a program that
// is correct when run one instruction at a time is correct (and deadlock
// free) when the engines overlap.  Both DMAs share the DRAM port (one beat of
// DMA_BITS per cycle, round robin); reads return after the DRAM latency.
`default_nettype none

module bf_top #(
    parameter integer R          = 16,
    parameter integer C          = 32,
    parameter integer IB_BYTES   = 65536,
    parameter integer WB_BYTES   = 32768,
    parameter integer OB_BYTES   = 16384,
    parameter integer DMA_BITS   = 128,
    parameter integer IMEM_DEPTH = 1024,
    parameter integer QD         = 4
) (
    input  wire                 clk,
    input  wire                 rst,
    input  wire                 imem_we,
    input  wire [31:0]          imem_addr,
    input  wire [63:0]          imem_wdata,
    input  wire                 start,
    output reg                  running,
    output reg                  done,
    output reg  [7:0]           error,
    output reg  [63:0]          cycles,
    output reg  [63:0]          perf_compute,   // cycles with an element issued
    output reg  [63:0]          perf_load,      // cycles the load DMA was busy
    output reg  [63:0]          perf_store,     // cycles the store DMA was busy
    output reg  [63:0]          perf_beats,     // DRAM beats transferred
    // DRAM port (registered request, in-order read responses)
    output reg                  dram_req_valid,
    output reg                  dram_req_we,
    output reg  [31:0]          dram_req_addr,  // beat address
    output reg  [DMA_BITS-1:0]  dram_req_wdata,
    output reg  [DMA_BITS/8-1:0] dram_req_wstrb,
    input  wire                 dram_req_ready,
    input  wire                 dram_rsp_valid,
    input  wire [DMA_BITS-1:0]  dram_rsp_data
);
    localparam integer RC       = R * C;
    localparam integer WPB      = DMA_BITS / 32;
    localparam integer LWPB     = $clog2(WPB);
    localparam integer IB_DEPTH = IB_BYTES / (4 * R);
    localparam integer WB_DEPTH = WB_BYTES / (4 * RC);
    localparam integer OB_DEPTH = OB_BYTES / (4 * C);
    localparam integer IBA      = $clog2(IB_DEPTH);
    localparam integer WBA      = (WB_DEPTH > 1) ? $clog2(WB_DEPTH) : 1;
    localparam integer OBA      = $clog2(OB_DEPTH);
    localparam integer IBF      = $clog2(R * IB_DEPTH);
    localparam integer WBF      = $clog2(RC * WB_DEPTH);
    localparam integer OBF      = $clog2(C * OB_DEPTH);
    localparam integer IMA      = $clog2(IMEM_DEPTH);
    localparam integer NL       = 6;              // loop levels
    localparam integer NG       = 8;              // address groups
    localparam integer NCH      = R + C;          // array latency (issue -> last column bottom)
    localparam integer LQD      = $clog2(QD);
    localparam integer PBW      = 3 * C;          // words of one PBUF slot
    localparam integer PBF      = $clog2(6 * C);
    localparam integer BB       = DMA_BITS / 8;   // bytes per beat
    localparam integer LBB      = LWPB + 2;
    localparam integer OUL      = 3;              // output-unit latency (column bottom -> OBUF)

    localparam [3:0] OP_HALT = 4'd0, OP_SETUP = 4'd1, OP_LOOP = 4'd2, OP_ENDLOOP = 4'd3, OP_STRIDE = 4'd4,
                     OP_LD = 4'd5, OP_ST = 4'd6, OP_COMPUTE = 4'd7, OP_CSHAPE = 4'd8, OP_OSETUP = 4'd9,
                     OP_YSHAPE = 4'd10, OP_STP = 4'd11;
    localparam [7:0] E_NONE = 8'd0, E_OPCODE = 8'd1, E_LOOPDEPTH = 8'd2, E_PC = 8'd3, E_ENDLOOP = 8'd4,
                     E_LDLEN = 8'd5, E_STLEN = 8'd6, E_SHAPE = 8'd7;

    // ---------------------------------------------------------------- IMEM
    reg [63:0] imem [0:IMEM_DEPTH-1];
    always @(posedge clk) if (imem_we) imem[imem_addr[IMA-1:0]] <= imem_wdata;

    // ---------------------------------------------------------------- mode / FU config
    reg [1:0] qa_code, qw_code;
    reg       i_two, w_two, o_two;    // ring has two slots
    // registered FU configuration (written by SETUP)
    reg [63:0] cfg_aoff_r, cfg_woff_r;
    reg [15:0] cfg_asg_r, cfg_wsg_r;
    reg [63:0] cfg_sh_r;
    reg [15:0] c_nt_r, c_st_r, c_nstr_r;    // CSHAPE
    // output unit (OSETUP) and packed stores (YSHAPE)
    reg        pk_mode, o_signed, o_relu, o_inplace;
    reg [3:0]  o_bits;
    reg [1:0]  o_pool;
    reg [7:0]  o_pool_n;
    reg [19:0] o_rm;
    reg [5:0]  o_rk;
    reg [15:0] y_rows_r, y_block_r;
    reg [27:0] y_pitch_r;
    wire [5:0] o_eo = (o_bits == 4'd0) ? 6'd32 : (o_bits <= 4'd2) ? 6'd2 : (o_bits <= 4'd4) ? 6'd4 : 6'd8;
    wire [31:0] o_cbits = 32'(C) * 32'(o_eo);
    wire [OBF-1:0] pk_chw   = (o_cbits < 32'd32) ? OBF'(1) : OBF'(o_cbits >> 5);
    wire [OBF-1:0] pk_base  = o_inplace ? OBF'(32'(o_pool_n - 8'd1) * C) : {OBF{1'b0}};
    wire [OBF-1:0] pk_pitch = o_inplace ? OBF'(32'(o_pool_n) * C) : pk_chw;
    // la/lw: log2(2-bit slices per value); an activation step is 32>>lw bits, a weight step 32>>la bits
    wire [1:0] la = (qa_code > 2'd2) ? 2'd2 : qa_code;
    wire [1:0] lw = (qw_code > 2'd2) ? 2'd2 : qw_code;

    // ---------------------------------------------------------------- queues
    // load queue entry: ns, words, beat address
    reg [1:0]   lq_ns    [0:QD-1];
    reg [23:0]  lq_words [0:QD-1];
    reg [31:0]  lq_addr  [0:QD-1];
    reg [LQD:0] lq_wp, lq_rp;
    reg [23:0]  sq_words [0:QD-1];
    reg [31:0]  sq_addr  [0:QD-1];       // ST: word address; STP: byte address
    reg         sq_pk    [0:QD-1];
    reg [15:0]  sq_rows  [0:QD-1];
    reg [27:0]  sq_pitch [0:QD-1];
    reg [9:0]   sq_bytes [0:QD-1];
    reg [LQD:0] sq_wp, sq_rp;
    reg [15:0]  cq_nt    [0:QD-1];
    reg [15:0]  cq_st    [0:QD-1];
    reg [15:0]  cq_nstr  [0:QD-1];
    reg [19:0]  cq_ib    [0:QD-1];
    reg [19:0]  cq_wb    [0:QD-1];
    reg [4:0]   cq_fl    [0:QD-1];    // {rel_p, rel_w, rel_i, finish, acquire}
    reg [LQD:0] cq_wp, cq_rp;
    wire lq_empty = lq_wp == lq_rp;
    wire sq_empty = sq_wp == sq_rp;
    wire cq_empty = cq_wp == cq_rp;
    wire lq_full  = (lq_wp[LQD] != lq_rp[LQD]) && (lq_wp[LQD-1:0] == lq_rp[LQD-1:0]);
    wire sq_full  = (sq_wp[LQD] != sq_rp[LQD]) && (sq_wp[LQD-1:0] == sq_rp[LQD-1:0]);
    wire cq_full  = (cq_wp[LQD] != cq_rp[LQD]) && (cq_wp[LQD-1:0] == cq_rp[LQD-1:0]);
    wire [LQD-1:0] lqh = lq_rp[LQD-1:0];
    wire [LQD-1:0] sqh = sq_rp[LQD-1:0];
    wire [LQD-1:0] cqh = cq_rp[LQD-1:0];

    // ---------------------------------------------------------------- slot rings
    reg [1:0] i_cnt, w_cnt, o_cnt, o_cmp;   // allocated slots; finished OBUF slots
    reg       i_lp, w_lp;                   // next slot a load fills
    reg       i_cp, w_cp;                   // slot the compute engine reads
    reg       o_np, o_sp;                   // next OBUF slot to acquire / to store
    reg [1:0] i_rdy, w_rdy;                 // slot loaded and not yet released
    reg [1:0] p_cnt, p_rdy;                 // PBUF ring (always 2 slots)
    reg       p_lp, p_cp;
    wire [1:0] i_slots = i_two ? 2'd2 : 2'd1;
    wire [1:0] w_slots = w_two ? 2'd2 : 2'd1;
    wire [1:0] o_slots = o_two ? 2'd2 : 2'd1;

    // ---------------------------------------------------------------- compute engine
    reg          c_busy;
    reg [15:0]   c_n, c_s, c_nt, c_st, c_nstr;
    reg [19:0]   c_rowpos, c_wb;
    reg          c_islot, c_wslot, c_oslot, c_ow, c_fin, c_reli, c_relw, c_relp, c_pslot;
    reg [7:0]    c_pi;                      // row inside the pooling window
    reg [OBF-1:0] c_prow;                   // packed row (pooling window) inside the tile
    reg [7:0]    c_drain;
    wire         c_lastn = (c_n == c_nt - 16'd1);
    wire         c_lasts = (c_s == c_st - 16'd1);
    wire         c_final = c_busy && c_lastn && c_lasts;
    wire [19:0]  c_ipos  = c_rowpos + {4'd0, c_s};
    wire [19:0]  c_wpos  = c_wb + {4'd0, c_s};
    wire [IBA-1:0] i_slot_base = c_islot ? IBA'(IB_DEPTH / 2) : {IBA{1'b0}};
    wire [WBA-1:0] w_slot_base = c_wslot ? WBA'(WB_DEPTH / 2) : {WBA{1'b0}};
    wire [OBA-1:0] o_slot_base = c_oslot ? OBA'(OB_DEPTH / 2) : {OBA{1'b0}};
    wire [IBA-1:0] iss_iaddr = i_slot_base + IBA'(c_ipos >> lw);
    wire [4:0]     iss_ish   = 5'((c_ipos & ((20'd1 << lw) - 20'd1)) << (3'd5 - {1'b0, lw}));
    wire [WBA-1:0] iss_waddr = w_slot_base + WBA'(c_wpos >> la);
    wire [4:0]     iss_wsh   = 5'((c_wpos & ((20'd1 << la) - 20'd1)) << (3'd5 - {1'b0, la}));
    wire [OBA-1:0] iss_orow  = o_slot_base + OBA'(c_n);
    wire [3:0]     iss_ev    = c_final ? {c_relp, c_fin, c_relw, c_reli} : 4'b0000;
    wire [3:0]     ev;

    // can the compute queue's head start now?
    wire [4:0] h_fl  = cq_fl[cqh];
    wire c_can = !cq_empty && i_rdy[i_cp] && w_rdy[w_cp] && (!h_fl[0] || o_cnt < o_slots) &&
                 (!pk_mode || !h_fl[1] || p_rdy[p_cp]) && (!c_busy || c_final);

    // ---------------------------------------------------------------- load DMA
    reg          l_busy, l_slot;
    reg [1:0]    l_ns;
    reg [23:0]   l_beats, l_rq, l_rs;
    reg [31:0]   l_addr;
    wire         l_want  = l_busy && (l_rq != l_beats);
    wire [1:0]   h_lns   = lq_ns[lqh];
    wire         l_can   = !lq_empty && !l_busy && ((h_lns == 2'd2) ? (p_cnt < 2'd2) :
                                                    (h_lns == 2'd1) ? (w_cnt < w_slots) : (i_cnt < i_slots));
    wire [IBF-1:0] ib_slot_flat = (l_slot ? IBF'(IB_DEPTH / 2 * R) : {IBF{1'b0}});
    wire [WBF-1:0] wb_slot_flat = (l_slot ? WBF'(WB_DEPTH / 2 * RC) : {WBF{1'b0}});
    wire [IBF-1:0] ib_wbase = ib_slot_flat + IBF'(l_rs << LWPB);
    wire [WBF-1:0] wb_wbase = wb_slot_flat + WBF'(l_rs << LWPB);
    wire [PBF-1:0] pb_wbase = (l_slot ? PBF'(PBW) : {PBF{1'b0}}) + PBF'(l_rs << LWPB);
    wire         ib_we = l_busy && dram_rsp_valid && (l_ns == 2'd0);
    wire         wb_we = l_busy && dram_rsp_valid && (l_ns == 2'd1);
    wire         pb_we = l_busy && dram_rsp_valid && (l_ns == 2'd2);

    // ---------------------------------------------------------------- store DMA
    // ST: one burst of int32 words.  STP: packed rows, each the beats its bytes touch, the
    // data shifted to the row's byte offset and the bytes outside it masked.
    reg          s_busy, s_slot, s_pk;
    reg [23:0]   s_beats, s_wq;
    reg [31:0]   s_addr;            // ST: beat address; STP: byte address of the current row
    reg [15:0]   s_rows, s_row;
    reg [27:0]   s_pitch;
    reg [9:0]    s_bytes;
    reg [10:0]   s_beat;            // STP: beat inside the row
    wire [10:0]  s_nb    = (11'(s_addr[LBB-1:0]) + 11'(s_bytes) + 11'(BB - 1)) >> LBB;
    wire         s_rowend = (s_beat + 11'd1 == s_nb);
    wire         s_want  = s_busy && (s_pk ? (s_row != s_rows) : (s_wq != s_beats));
    wire         s_can   = !sq_empty && !s_busy && (o_cmp != 2'd0);
    wire signed [15:0] s_sb = $signed(16'({s_beat, {LBB{1'b0}}})) - $signed(16'(s_addr[LBB-1:0]));  // chunk byte at beat byte 0
    wire [OBF-1:0] s_slotw  = s_slot ? OBF'(OB_DEPTH / 2 * C) : {OBF{1'b0}};
    wire [OBF-1:0] ob_rbase = s_pk ? s_slotw + pk_base + OBF'(s_row) * pk_pitch + OBF'(s_sb >>> 2)
                                   : s_slotw + OBF'(s_wq << LWPB);
    wire [WPB*32+31:0] ob_rdata;
    wire [WPB*32-1:0]  s_wdata = s_pk ? (WPB*32)'(ob_rdata >> {s_sb[1:0], 3'b000}) : ob_rdata[WPB*32-1:0];
    reg  [BB-1:0]      s_strb;
    integer sbi;
    always @* begin
        for (sbi = 0; sbi < BB; sbi = sbi + 1)
            s_strb[sbi] = !s_pk || ((s_sb + 16'(sbi) >= 0) && (s_sb + 16'(sbi) < $signed({6'd0, s_bytes})));
    end
    reg          rr;            // round robin: 1 = the store DMA had the port last

    // ---------------------------------------------------------------- sequencer
    reg [IMA:0]  pc;
    reg [2:0]    depth;
    reg [IMA:0]  lp_start [0:NL-1];
    reg [31:0]   lp_cnt   [0:NL-1];
    reg [31:0]   lp_idx   [0:NL-1];
    reg [31:0]   stride   [0:NG*NL-1];
    reg [31:0]   agacc    [0:NG*NL-1];
    wire [63:0]  ins = imem[pc[IMA-1:0]];
    wire [3:0]   op  = ins[63:60];
    wire [2:0]   g1  = ins[58:56];
    wire [2:0]   g2  = ins[55:53];

    reg [31:0] off1, off2;
    reg [NL-1:0] isf, isl;
    integer l;
    always @* begin
        off1 = 32'd0;
        off2 = 32'd0;
        for (l = 0; l < NL; l = l + 1) begin
            off1 = off1 + agacc[g1 * NL + l];
            off2 = off2 + agacc[g2 * NL + l];
            isf[l] = (l >= depth) || (lp_idx[l] == 32'd0);
            isl[l] = (l >= depth) || (lp_idx[l] == lp_cnt[l] - 32'd1);
        end
    end
    function automatic cond(input [NL-1:0] bits, input [2:0] lvl);
        integer q;
        begin
            cond = 1'b1;
            for (q = 0; q < NL; q = q + 1) if (q >= lvl && !bits[q]) cond = 1'b0;
        end
    endfunction

    wire all_idle = !c_busy && cq_empty && (c_drain == 8'd0) && !l_busy && lq_empty && !s_busy && sq_empty &&
                    !dram_req_valid;
    // STP: bytes per row = min(chunk, group block - clip offset)
    wire signed [32:0] stp_left  = $signed({17'd0, y_block_r}) - $signed({1'b0, off2});
    wire [9:0]         stp_bytes = (stp_left <= 0) ? 10'd0 : (stp_left < $signed({23'd0, ins[41:32]})) ? stp_left[9:0]
                                                                                                  : ins[41:32];

    // ---------------------------------------------------------------- everything clocked
    integer gg;
    reg [1:0] i_cnt_n, w_cnt_n, o_cnt_n, o_cmp_n, p_cnt_n;
    reg       take_l, take_s;
    always @(posedge clk) begin
        if (rst) begin
            running <= 1'b0; done <= 1'b0; error <= E_NONE;
            c_busy <= 1'b0; l_busy <= 1'b0; s_busy <= 1'b0; dram_req_valid <= 1'b0;
            lq_wp <= 0; lq_rp <= 0; sq_wp <= 0; sq_rp <= 0; cq_wp <= 0; cq_rp <= 0;
            qa_code <= 2'd2; qw_code <= 2'd2;
            i_two <= 1'b0; w_two <= 1'b0; o_two <= 1'b0; pk_mode <= 1'b0;
        end else if (start && !running) begin
            running <= 1'b1; done <= 1'b0; error <= E_NONE;
            cycles <= 64'd0; perf_compute <= 64'd0; perf_load <= 64'd0; perf_store <= 64'd0; perf_beats <= 64'd0;
            pc <= 0; depth <= 3'd0;
            for (gg = 0; gg < NG * NL; gg = gg + 1) begin stride[gg] <= 32'd0; agacc[gg] <= 32'd0; end
            c_busy <= 1'b0; l_busy <= 1'b0; s_busy <= 1'b0; dram_req_valid <= 1'b0; c_drain <= 8'd0;
            lq_wp <= 0; lq_rp <= 0; sq_wp <= 0; sq_rp <= 0; cq_wp <= 0; cq_rp <= 0;
            i_cnt <= 2'd0; w_cnt <= 2'd0; o_cnt <= 2'd0; o_cmp <= 2'd0;
            i_lp <= 1'b0; w_lp <= 1'b0; i_cp <= 1'b0; w_cp <= 1'b0; o_np <= 1'b0; o_sp <= 1'b0;
            i_rdy <= 2'b00; w_rdy <= 2'b00; rr <= 1'b0;
            pk_mode <= 1'b0; p_cnt <= 2'd0; p_rdy <= 2'b00; p_lp <= 1'b0; p_cp <= 1'b0;
        end else if (running) begin
            cycles <= cycles + 64'd1;
            if (c_busy) perf_compute <= perf_compute + 64'd1;
            if (l_busy) perf_load <= perf_load + 64'd1;
            if (s_busy) perf_store <= perf_store + 64'd1;
            if (dram_req_valid && dram_req_ready) perf_beats <= perf_beats + 64'd1;

            i_cnt_n = i_cnt - {1'b0, ev[0]};
            w_cnt_n = w_cnt - {1'b0, ev[1]};
            o_cnt_n = o_cnt;
            o_cmp_n = o_cmp + {1'b0, ev[2]};
            p_cnt_n = p_cnt - {1'b0, ev[3]};

            // ---------------- sequencer: one instruction per cycle
            case (op)
            OP_HALT: if (all_idle) begin running <= 1'b0; done <= 1'b1; end
            OP_SETUP: if (all_idle) begin
                qa_code <= ins[1:0]; qw_code <= ins[3:2];
                i_two <= ins[6]; w_two <= ins[7]; o_two <= ins[8];
                i_cnt_n = 2'd0; w_cnt_n = 2'd0; o_cnt_n = 2'd0; o_cmp_n = 2'd0; p_cnt_n = 2'd0;
                i_lp <= 1'b0; w_lp <= 1'b0; i_cp <= 1'b0; w_cp <= 1'b0; o_np <= 1'b0; o_sp <= 1'b0;
                i_rdy <= 2'b00; w_rdy <= 2'b00; p_rdy <= 2'b00; p_lp <= 1'b0; p_cp <= 1'b0;
                pk_mode <= 1'b0;
                pc <= pc + 1;
            end
            OP_OSETUP: if (all_idle) begin
                if (ins[0] && (ins[16:9] == 8'd0 || ins[4:1] > 4'd8)) begin
                    error <= E_SHAPE; running <= 1'b0; done <= 1'b1;
                end else begin
                    pk_mode <= ins[0]; o_bits <= ins[4:1]; o_signed <= ins[5]; o_relu <= ins[6];
                    o_pool <= ins[8:7]; o_pool_n <= ins[16:9]; o_rk <= ins[22:17]; o_rm <= ins[42:23];
                    o_inplace <= ins[43];
                    pc <= pc + 1;
                end
            end
            OP_YSHAPE: begin
                if (ins[15:0] == 16'd0 || ins[43:16] == 28'd0 || ins[59:44] == 16'd0) begin
                    error <= E_SHAPE; running <= 1'b0; done <= 1'b1;
                end else begin
                    y_rows_r <= ins[15:0]; y_pitch_r <= ins[43:16]; y_block_r <= ins[59:44];
                    pc <= pc + 1;
                end
            end
            OP_LOOP: begin
                if (depth == 3'(NL) || ins[31:0] == 32'd0) begin
                    error <= (depth == 3'(NL)) ? E_LOOPDEPTH : E_SHAPE; running <= 1'b0; done <= 1'b1;
                end else begin
                    lp_start[depth] <= pc + 1; lp_cnt[depth] <= ins[31:0]; lp_idx[depth] <= 32'd0;
                    for (gg = 0; gg < NG; gg = gg + 1) agacc[gg * NL + 32'(depth)] <= 32'd0;
                    depth <= depth + 3'd1;
                    pc <= pc + 1;
                end
            end
            OP_ENDLOOP: begin
                if (depth == 3'd0) begin
                    error <= E_ENDLOOP; running <= 1'b0; done <= 1'b1;
                end else if (lp_idx[depth - 3'd1] + 32'd1 < lp_cnt[depth - 3'd1]) begin
                    lp_idx[depth - 3'd1] <= lp_idx[depth - 3'd1] + 32'd1;
                    for (gg = 0; gg < NG; gg = gg + 1)
                        agacc[gg * NL + 32'(depth) - 1] <= agacc[gg * NL + 32'(depth) - 1] + stride[gg * NL + 32'(depth) - 1];
                    pc <= lp_start[depth - 3'd1];
                end else begin
                    for (gg = 0; gg < NG; gg = gg + 1) agacc[gg * NL + 32'(depth) - 1] <= 32'd0;
                    lp_idx[depth - 3'd1] <= 32'd0;
                    depth <= depth - 3'd1;
                    pc <= pc + 1;
                end
            end
            OP_STRIDE: begin
                stride[32'(g1) * NL + 32'(g2)] <= ins[31:0];
                pc <= pc + 1;
            end
            OP_CSHAPE: begin
                if (ins[15:0] == 16'd0 || ins[31:16] == 16'd0) begin
                    error <= E_SHAPE; running <= 1'b0; done <= 1'b1;
                end else begin
                    c_nt_r <= ins[15:0]; c_st_r <= ins[31:16]; c_nstr_r <= ins[47:32];
                    pc <= pc + 1;
                end
            end
            OP_LD: if (!lq_full) begin
                if (ins[54:32] == 23'd0 || (ins[54:32] & 23'(WPB - 1)) != 23'd0 || {ins[55], ins[59]} == 2'd3 ||
                    ins[54:32] > (ins[55] ? 23'(PBW) : ins[59] ? 23'(RC * WB_DEPTH) : 23'(R * IB_DEPTH))) begin
                    error <= E_LDLEN; running <= 1'b0; done <= 1'b1;
                end else begin
                    lq_ns[lq_wp[LQD-1:0]] <= {ins[55], ins[59]};
                    lq_words[lq_wp[LQD-1:0]] <= {1'b0, ins[54:32]};
                    lq_addr[lq_wp[LQD-1:0]] <= ins[31:0] + off1;
                    lq_wp <= lq_wp + 1;
                    pc <= pc + 1;
                end
            end
            OP_ST: if (!sq_full) begin
                if (ins[55:32] == 24'd0 || (ins[55:32] & 24'(WPB - 1)) != 24'd0 ||
                    ins[55:32] > 24'(C * OB_DEPTH)) begin
                    error <= E_STLEN; running <= 1'b0; done <= 1'b1;
                end else begin
                    sq_words[sq_wp[LQD-1:0]] <= ins[55:32];
                    sq_addr[sq_wp[LQD-1:0]] <= ins[31:0] + off1;
                    sq_pk[sq_wp[LQD-1:0]] <= 1'b0;
                    sq_wp <= sq_wp + 1;
                    pc <= pc + 1;
                end
            end
            OP_STP: if (!sq_full) begin
                if (stp_bytes == 10'd0) begin
                    error <= E_STLEN; running <= 1'b0; done <= 1'b1;
                end else begin
                    sq_pk[sq_wp[LQD-1:0]] <= 1'b1;
                    sq_addr[sq_wp[LQD-1:0]] <= ins[31:0] + off1;
                    sq_rows[sq_wp[LQD-1:0]] <= y_rows_r;
                    sq_pitch[sq_wp[LQD-1:0]] <= y_pitch_r;
                    sq_bytes[sq_wp[LQD-1:0]] <= stp_bytes;
                    sq_wp <= sq_wp + 1;
                    pc <= pc + 1;
                end
            end
            OP_COMPUTE: if (!cq_full) begin
                cq_nt[cq_wp[LQD-1:0]] <= c_nt_r;
                cq_st[cq_wp[LQD-1:0]] <= c_st_r;
                cq_nstr[cq_wp[LQD-1:0]] <= c_nstr_r;
                cq_ib[cq_wp[LQD-1:0]] <= 20'(ins[15:0]) + off1[19:0];
                cq_wb[cq_wp[LQD-1:0]] <= 20'(ins[31:16]) + off2[19:0];
                cq_fl[cq_wp[LQD-1:0]] <= {cond(isl, ins[40:38]), cond(isl, ins[43:41]), cond(isl, ins[46:44]),
                                          cond(isl, ins[49:47]), cond(isf, ins[52:50])};
                cq_wp <= cq_wp + 1;
                pc <= pc + 1;
            end
            default: begin error <= E_OPCODE; running <= 1'b0; done <= 1'b1; end
            endcase
            if (pc >= (IMA+1)'(IMEM_DEPTH)) begin error <= E_PC; running <= 1'b0; done <= 1'b1; end

            // ---------------- compute engine
            if (c_busy) begin
                c_drain <= 8'(NCH + 2 + OUL);
                if (c_lasts) begin
                    c_s <= 16'd0;
                    c_n <= c_n + 16'd1;
                    c_rowpos <= c_rowpos + {4'd0, c_nstr};
                    if (c_pi + 8'd1 == o_pool_n) begin
                        c_pi <= 8'd0; c_prow <= c_prow + OBF'(1);
                    end else begin
                        c_pi <= c_pi + 8'd1;
                    end
                end else begin
                    c_s <= c_s + 16'd1;
                end
                if (c_final) c_busy <= 1'b0;
            end else if (c_drain != 8'd0) begin
                c_drain <= c_drain - 8'd1;
            end
            if (c_can) begin
                c_busy <= 1'b1;
                c_n <= 16'd0; c_s <= 16'd0;
                c_nt <= cq_nt[cqh]; c_st <= cq_st[cqh]; c_nstr <= cq_nstr[cqh];
                c_rowpos <= cq_ib[cqh]; c_wb <= cq_wb[cqh];
                c_islot <= i_cp; c_wslot <= w_cp;
                c_fin <= h_fl[1]; c_reli <= h_fl[2]; c_relw <= h_fl[3];
                c_relp <= h_fl[4] && pk_mode; c_pslot <= p_cp;
                c_pi <= 8'd0; c_prow <= {OBF{1'b0}};
                c_ow <= h_fl[0];
                if (h_fl[0]) begin
                    c_oslot <= o_np;
                    o_np <= o_two ? ~o_np : 1'b0;
                    o_cnt_n = o_cnt_n + 2'd1;
                end
                if (h_fl[2]) begin i_rdy[i_cp] <= 1'b0; i_cp <= i_two ? ~i_cp : 1'b0; end
                if (h_fl[3]) begin w_rdy[w_cp] <= 1'b0; w_cp <= w_two ? ~w_cp : 1'b0; end
                if (h_fl[4] && pk_mode) begin p_rdy[p_cp] <= 1'b0; p_cp <= ~p_cp; end
                cq_rp <= cq_rp + 1;
            end

            // ---------------- load DMA
            if (l_can) begin
                l_busy <= 1'b1; l_ns <= h_lns;
                l_beats <= lq_words[lqh] >> LWPB; l_rq <= 24'd0; l_rs <= 24'd0;
                l_addr <= lq_addr[lqh] >> LWPB;
                if (h_lns == 2'd2) begin
                    l_slot <= p_lp; p_lp <= ~p_lp; p_cnt_n = p_cnt_n + 2'd1;
                end else if (h_lns == 2'd1) begin
                    l_slot <= w_lp; w_lp <= w_two ? ~w_lp : 1'b0; w_cnt_n = w_cnt_n + 2'd1;
                end else begin
                    l_slot <= i_lp; i_lp <= i_two ? ~i_lp : 1'b0; i_cnt_n = i_cnt_n + 2'd1;
                end
                lq_rp <= lq_rp + 1;
            end
            if (l_busy && dram_rsp_valid) begin
                l_rs <= l_rs + 24'd1;
                if (l_rs + 24'd1 == l_beats) begin
                    l_busy <= 1'b0;
                    if (l_ns == 2'd2) p_rdy[l_slot] <= 1'b1;
                    else if (l_ns == 2'd1) w_rdy[l_slot] <= 1'b1;
                    else i_rdy[l_slot] <= 1'b1;
                end
            end

            // ---------------- store DMA
            if (s_can) begin
                s_busy <= 1'b1; s_slot <= o_sp; o_sp <= o_two ? ~o_sp : 1'b0;
                s_beats <= sq_words[sqh] >> LWPB; s_wq <= 24'd0;
                s_pk <= sq_pk[sqh];
                s_addr <= sq_pk[sqh] ? sq_addr[sqh] : sq_addr[sqh] >> LWPB;
                s_rows <= sq_rows[sqh]; s_row <= 16'd0; s_pitch <= sq_pitch[sqh]; s_bytes <= sq_bytes[sqh];
                s_beat <= 11'd0;
                o_cmp_n = o_cmp_n - 2'd1;
                sq_rp <= sq_rp + 1;
            end

            // ---------------- DRAM request port (round robin between the DMAs)
            if (!dram_req_valid || dram_req_ready) begin
                take_l = l_want && (!s_want || rr);
                take_s = s_want && !take_l;
                dram_req_valid <= take_l || take_s;
                if (take_l) begin
                    dram_req_we <= 1'b0; dram_req_addr <= l_addr + 32'(l_rq); l_rq <= l_rq + 24'd1; rr <= 1'b0;
                end else if (take_s) begin
                    dram_req_we <= 1'b1; dram_req_wdata <= s_wdata; dram_req_wstrb <= s_strb; rr <= 1'b1;
                    if (s_pk) begin
                        dram_req_addr <= (s_addr >> LBB) + 32'(s_beat);
                        if (s_rowend) begin
                            s_beat <= 11'd0; s_row <= s_row + 16'd1; s_addr <= s_addr + 32'(s_pitch);
                            if (s_row + 16'd1 == s_rows) begin
                                s_busy <= 1'b0;
                                o_cnt_n = o_cnt_n - 2'd1;
                            end
                        end else begin
                            s_beat <= s_beat + 11'd1;
                        end
                    end else begin
                        dram_req_addr <= s_addr + 32'(s_wq); s_wq <= s_wq + 24'd1;
                        if (s_wq + 24'd1 == s_beats) begin
                            s_busy <= 1'b0;
                            o_cnt_n = o_cnt_n - 2'd1;
                        end
                    end
                end
            end

            i_cnt <= i_cnt_n; w_cnt <= w_cnt_n; o_cnt <= o_cnt_n; o_cmp <= o_cmp_n; p_cnt <= p_cnt_n;
        end
    end

    // decoder for the mode a SETUP is about to write
    wire [63:0] cfg_aoff_w_next, cfg_woff_w_next;
    wire [15:0] cfg_asg_w_next, cfg_wsg_w_next;
    wire [63:0] cfg_sh_w_next;
    bf_fu_cfg setupcfg (.qa_code(ins[1:0]), .qw_code(ins[3:2]), .a_signed(ins[4]), .w_signed(ins[5]),
                        .aoff(cfg_aoff_w_next), .woff(cfg_woff_w_next), .asg(cfg_asg_w_next),
                        .wsg(cfg_wsg_w_next), .sh(cfg_sh_w_next));

    always @(posedge clk) begin
        if (running && op == OP_SETUP && all_idle) begin
            cfg_aoff_r <= cfg_aoff_w_next; cfg_woff_r <= cfg_woff_w_next; cfg_asg_r <= cfg_asg_w_next;
            cfg_wsg_r <= cfg_wsg_w_next; cfg_sh_r <= cfg_sh_w_next;
        end
    end

    bf_datapath #(.R(R), .C(C), .IB_DEPTH(IB_DEPTH), .WB_DEPTH(WB_DEPTH), .OB_DEPTH(OB_DEPTH), .WPB(WPB)) dp (
        .clk(clk), .cfg_aoff(cfg_aoff_r), .cfg_woff(cfg_woff_r), .cfg_asg(cfg_asg_r), .cfg_wsg(cfg_wsg_r),
        .cfg_sh(cfg_sh_r),
        .pk_mode(pk_mode), .o_bits(o_bits), .o_signed(o_signed), .o_relu(o_relu), .o_pool(o_pool),
        .o_pool_n(o_pool_n), .o_rm(o_rm), .o_rk(o_rk), .o_eo(o_eo), .pk_base(pk_base), .pk_pitch(pk_pitch),
        .iss_vld(c_busy), .iss_iaddr(iss_iaddr), .iss_ish(iss_ish), .iss_waddr(iss_waddr), .iss_wsh(iss_wsh),
        .iss_first(c_s == 16'd0), .iss_last(c_lasts), .iss_ow(c_ow), .iss_orow(iss_orow), .iss_oslot(c_oslot),
        .iss_fin(c_fin), .iss_pf(c_pi == 8'd0), .iss_pl(c_pi + 8'd1 == o_pool_n), .iss_prow(c_prow),
        .iss_pslot(c_pslot), .iss_ev(iss_ev), .ev_out(ev),
        .ib_we(ib_we), .ib_wbase(ib_wbase), .wb_we(wb_we), .wb_wbase(wb_wbase), .pb_we(pb_we),
        .pb_wbase(pb_wbase), .dma_wdata(dram_rsp_data),
        .ob_rbase(ob_rbase), .ob_rdata(ob_rdata));

endmodule

`default_nettype wire
