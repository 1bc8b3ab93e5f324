// BitFusion datapath: the systolic array of Fusion Units and its buffers.
//
// R rows x C columns of Fusion Units (published: 16 x 32).  Row r reduces
// lanes [r*P, r*P+P) of every step of R*P reduction elements; column c owns
// one output channel.  Activations enter each row from its IBUF bank and move
// one column to the right per cycle; partial sums move one row down per cycle;
// every Fusion Unit reads its own weight each cycle from its WBUF bank.  Rows
// start skewed (row r r cycles after row 0), so the element issued at cycle T
// is processed by FU(r, c) at T + r + c + 1 and leaves the bottom of column c
// at T + R + c + 1, where the column's accumulator adds it up over the steps
// of the reduction and, on the last step, adds it into the output buffer
// (int32 partial sums) or, in packed mode on the COMPUTE that finishes the
// tile, hands the finished sum to the column's output unit (bf_out_unit:
// requantise, ReLU, pool, code), whose code is written 3 cycles later into the
// packed rows of the OBUF slot (bit-masked: columns share 32-bit words).
//
// Buffers (word = 32 bits; a buffer address names one word in every bank):
//   IBUF  R banks x IB_DEPTH words  (flat index = addr*R + row)
//   WBUF  R*C banks x WB_DEPTH words (one bank per FU; flat = addr*R*C + row*C + col)
//   OBUF  C banks x OB_DEPTH int32   (flat = row*C + col; packed rows: see bf_top)
//   PBUF  2 slots x C x (bias, mult, shift | valid << 8)  (flat = slot*3C + 3*col + j)
// The DMA writes WPB consecutive flat words per cycle (one DRAM beat) and the
// store path reads WPB + 1 consecutive flat OBUF words per cycle (STP aligns
// them to bytes).
//
// The control signals that accompany an element (valid, weight address and
// shift, output-row tag) are the same for every FU on one anti-diagonal r+c,
// so they travel in one shared delay line (`ch`) instead of R*C copies of
// identical registers; activations and partial sums are per FU.
`default_nettype none

module bf_datapath #(
    parameter integer R        = 16,
    parameter integer C        = 32,
    parameter integer IB_DEPTH = 1024,
    parameter integer WB_DEPTH = 16,
    parameter integer OB_DEPTH = 128,
    parameter integer WPB      = 4,
    parameter integer IBA      = $clog2(IB_DEPTH),
    parameter integer WBA      = (WB_DEPTH > 1) ? $clog2(WB_DEPTH) : 1,
    parameter integer OBA      = $clog2(OB_DEPTH),
    parameter integer IBF      = $clog2(R * IB_DEPTH),
    parameter integer WBF      = $clog2(R * C * WB_DEPTH),
    parameter integer OBF      = $clog2(C * OB_DEPTH),
    parameter integer PBF      = $clog2(6 * C)
) (
    input  wire                 clk,
    // Fusion Unit configuration (decoded precision mode)
    input  wire [63:0]          cfg_aoff,
    input  wire [63:0]          cfg_woff,
    input  wire [15:0]          cfg_asg,
    input  wire [15:0]          cfg_wsg,
    input  wire [63:0]          cfg_sh,
    // output unit mode (OSETUP) and the packed rows' place in an OBUF slot
    input  wire                 pk_mode,
    input  wire [3:0]           o_bits,
    input  wire                 o_signed,
    input  wire                 o_relu,
    input  wire [1:0]           o_pool,
    input  wire [7:0]           o_pool_n,
    input  wire [19:0]          o_rm,
    input  wire [5:0]           o_rk,
    input  wire [5:0]           o_eo,        // container bits: 2, 4, 8 or 32
    input  wire [OBF-1:0]       pk_base,     // packed row 0 (word inside the slot)
    input  wire [OBF-1:0]       pk_pitch,    // words between packed rows
    // one element per cycle from the compute engine
    input  wire                 iss_vld,
    input  wire [IBA-1:0]       iss_iaddr,   // IBUF bank word
    input  wire [4:0]           iss_ish,     // bit offset of the activation step inside it
    input  wire [WBA-1:0]       iss_waddr,   // WBUF bank word
    input  wire [4:0]           iss_wsh,
    input  wire                 iss_first,   // first step of this output row: clear the accumulator
    input  wire                 iss_last,    // last step: add the sum into OBUF
    input  wire                 iss_ow,      // overwrite OBUF instead of accumulating
    input  wire [OBA-1:0]       iss_orow,
    input  wire                 iss_oslot,   // OBUF slot of this COMPUTE
    input  wire                 iss_fin,     // the COMPUTE finishes its output tile
    input  wire                 iss_pf,      // first / last row of a pooling window
    input  wire                 iss_pl,
    input  wire [OBF-1:0]       iss_prow,    // packed row of this row
    input  wire                 iss_pslot,   // PBUF slot of this COMPUTE
    input  wire [3:0]           iss_ev,      // events raised when this element leaves the array
    output wire [3:0]           ev_out,      // [2] (tile finished) comes once its codes are in OBUF
    // DMA writes into IBUF / WBUF
    input  wire                 ib_we,
    input  wire [IBF-1:0]       ib_wbase,
    input  wire                 wb_we,
    input  wire [WBF-1:0]       wb_wbase,
    input  wire                 pb_we,
    input  wire [PBF-1:0]       pb_wbase,
    input  wire [WPB*32-1:0]    dma_wdata,
    // store path reads OBUF
    input  wire [OBF-1:0]       ob_rbase,
    output wire [WPB*32+31:0]   ob_rdata
);
    localparam integer RC = R * C;
    localparam integer NCH = R + C;   // delay-line stages: FU(r,c) uses stage r+c, column c's bottom R+c
    localparam integer OUL = 3;       // column bottom -> code in OBUF (bot register, 2 output-unit stages)
    localparam integer PBW = 3 * C;   // words of one PBUF slot

    reg [31:0] ibuf [0:R*IB_DEPTH-1];
    reg [31:0] wbuf [0:RC*WB_DEPTH-1];
    reg [31:0] obuf [0:C*OB_DEPTH-1];
    reg [31:0] pbuf [0:2*PBW-1];

    integer j;
    always @(posedge clk) begin
        if (ib_we)
            for (j = 0; j < WPB; j = j + 1) ibuf[ib_wbase + IBF'(j)] <= dma_wdata[j*32 +: 32];
        if (wb_we)
            for (j = 0; j < WPB; j = j + 1) wbuf[wb_wbase + WBF'(j)] <= dma_wdata[j*32 +: 32];
        if (pb_we)
            for (j = 0; j < WPB; j = j + 1) pbuf[pb_wbase + PBF'(j)] <= dma_wdata[j*32 +: 32];
    end

    genvar g;
    generate
        for (g = 0; g <= WPB; g = g + 1) begin : obrd
            assign ob_rdata[g*32 +: 32] = obuf[ob_rbase + OBF'(g)];
        end
    endgenerate

    // ---- shared delay line: stage k holds the element issued k+1 cycles ago ----
    reg              ch_vld   [0:NCH-1];
    // the fields travel packed in one word per stage (one copy per stage and cycle):
    // {prow, pslot, oslot, pl, pf, fin, ev[3:0], orow, ow, last, first, wsh[4:0], waddr}
    localparam integer F_WSH = WBA, F_FIRST = WBA + 5, F_LAST = F_FIRST + 1, F_OW = F_LAST + 1,
                       F_OROW = F_OW + 1, F_EV = F_OROW + OBA, F_FIN = F_EV + 4, F_PF = F_FIN + 1,
                       F_PL = F_PF + 1, F_OSLOT = F_PL + 1, F_PSLOT = F_OSLOT + 1, F_PROW = F_PSLOT + 1,
                       CW = F_PROW + OBF;
    reg [CW-1:0]     ch       [0:NCH-1];
    reg [OUL-1:0]    fin_d;                 // the tile-finished event, delayed by the output unit
    integer k;
    always @(posedge clk) begin
        ch_vld[0] <= iss_vld;
        ch[0] <= {iss_prow, iss_pslot, iss_oslot, iss_pl, iss_pf, iss_fin, iss_ev, iss_orow, iss_ow, iss_last,
                  iss_first, iss_wsh, iss_waddr};
        for (k = 1; k < NCH; k = k + 1) begin
            ch_vld[k] <= ch_vld[k-1];
            if (ch_vld[k-1]) ch[k] <= ch[k-1];
        end
        fin_d <= {fin_d[OUL-2:0], ch_vld[NCH-1] && ch[NCH-1][F_EV + 2]};
    end
    assign ev_out = {ch_vld[NCH-1] && ch[NCH-1][F_EV + 3], fin_d[OUL-1],
                     ch_vld[NCH-1] ? ch[NCH-1][F_EV +: 2] : 2'b00};

    // ---- per-row skew of the IBUF read: row r reads r cycles after issue ----
    reg             rd_vld   [0:R-1];
    reg [IBA-1:0]   rd_iaddr [0:R-1];
    reg [4:0]       rd_ish   [0:R-1];
    always @(posedge clk) begin
        for (k = 1; k < R; k = k + 1) begin
            rd_vld[k] <= (k == 1) ? iss_vld : rd_vld[k-1];
            if ((k == 1) ? iss_vld : rd_vld[k-1]) begin
                rd_iaddr[k] <= (k == 1) ? iss_iaddr : rd_iaddr[k-1];
                rd_ish[k]   <= (k == 1) ? iss_ish : rd_ish[k-1];
            end
        end
    end

    // ---- the array ----
    reg  [31:0]        areg [0:RC-1];    // activation held at FU(r,c)
    wire signed [31:0] bot_in [0:C-1];   // partial sums leaving the bottom row
`ifdef BF_FU_INSTANCES
    genvar r, c;
    // structural form: one bf_fusion_unit instance per FU (cocotb array tests)
    wire signed [31:0] psum [0:RC-1];
    generate
        for (r = 0; r < R; r = r + 1) begin : row
            wire           v0 = (r == 0) ? iss_vld : rd_vld[r];
            wire [IBA-1:0] a0 = (r == 0) ? iss_iaddr : rd_iaddr[r];
            wire [4:0]     s0 = (r == 0) ? iss_ish : rd_ish[r];
            wire [31:0]    ibw = ibuf[IBF'(a0) * IBF'(R) + IBF'(r)];
            always @(posedge clk) if (v0) areg[r*C] <= ibw >> s0;
            for (c = 0; c < C; c = c + 1) begin : col
                if (c > 0) begin : fwd
                    always @(posedge clk) if (ch_vld[r+c-1]) areg[r*C+c] <= areg[r*C+c-1];
                end
                wire [31:0] wword = wbuf[WBF'(ch[r+c][0 +: WBA]) * WBF'(RC) + WBF'(r*C+c)];
                wire signed [31:0] pin;
                if (r == 0) begin : top
                    assign pin = 32'sd0;
                end else begin : mid
                    assign pin = psum[(r-1)*C+c];
                end
                bf_fusion_unit fu (
                    .clk(clk), .en(ch_vld[r+c]), .a(areg[r*C+c]), .w(wword >> ch[r+c][F_WSH +: 5]),
                    .cfg_aoff(cfg_aoff), .cfg_woff(cfg_woff), .cfg_asg(cfg_asg), .cfg_wsg(cfg_wsg),
                    .cfg_sh(cfg_sh), .psum_in(pin), .psum_out(psum[r*C+c]));
            end
        end
    endgenerate
    // the bottom row's partial sums, as the column bottoms see them
    generate
        for (c = 0; c < C; c = c + 1) begin : botw
            assign bot_in[c] = psum[(R-1)*C+c];
        end
    endgenerate
`else
    // behavioural form of the same array (the default: much faster to simulate).
    // The loop body is one Fusion Unit, FU(r,c) = iteration (r,c), computing
    // exactly what bf_fusion_unit computes (the same fu_dot).  The loops run
    // bottom row first and right to left with blocking updates, so every FU
    // reads its neighbours' values from before this clock edge, as the
    // registers of the structural form do.
`include "bf_fu_dot.vh"
    reg signed [31:0] psum [0:RC-1];
    reg signed [31:0] psum_bot [0:C-1];   // the bottom row's outputs, registered like the FUs' psum_out
    integer fr, fc;
    reg [IBF-1:0] fia;
    reg [WBF-1:0] fwa;
    always @(posedge clk) begin
        for (fr = R - 1; fr >= 0; fr = fr - 1) begin
            /*verilator unroll_disable*/
            for (fc = C - 1; fc >= 0; fc = fc - 1) begin
                /*verilator unroll_disable*/
                if (ch_vld[fr+fc]) begin
                    fwa = WBF'(ch[fr+fc][0 +: WBA]) * WBF'(RC) + WBF'(fr*C+fc);
                    psum[fr*C+fc] = ((fr == 0) ? 32'sd0 : psum[(fr-1)*C+fc]) +
                                    fu_dot(areg[fr*C+fc], wbuf[fwa] >> ch[fr+fc][F_WSH +: 5], cfg_aoff, cfg_woff,
                                           cfg_asg, cfg_wsg, cfg_sh);
                    if (fr == R - 1) psum_bot[fc] <= psum[fr*C+fc];
                    if (fc + 1 < C) areg[fr*C+fc+1] = areg[fr*C+fc];
                end
            end
            // row input: IBUF bank fr, read fr cycles after issue
            if ((fr == 0) ? iss_vld : rd_vld[fr]) begin
                fia = IBF'((fr == 0) ? iss_iaddr : rd_iaddr[fr]) * IBF'(R) + IBF'(fr);
                areg[fr*C] = ibuf[fia] >> ((fr == 0) ? iss_ish : rd_ish[fr]);
            end
        end
    end
    genvar c;
    generate
        for (c = 0; c < C; c = c + 1) begin : botw
            assign bot_in[c] = psum_bot[c];
        end
    endgenerate
`endif

    // ---- column bottoms (both forms): accumulate over the steps; on the last step add into OBUF
    // (int32), or in packed mode on the finishing COMPUTE hand the total to the output unit
    reg signed [31:0] acc     [0:C-1];
    reg               bot_v   [0:C-1];
    reg signed [31:0] bot_tot [0:C-1];
    reg [1:0]         bot_pfl [0:C-1];
    reg [OBF+4:0]     bot_tag [0:C-1];    // {OBUF word, bit offset} of the column's code
    reg [31:0]        bot_b   [0:C-1];
    reg [31:0]        bot_m   [0:C-1];
    reg [31:0]        bot_s   [0:C-1];
    wire              ou_v    [0:C-1];
    wire [31:0]       ou_code [0:C-1];
    wire [OBF+4:0]    ou_tag  [0:C-1];
    wire [31:0]       emask = (o_eo == 6'd32) ? 32'hFFFFFFFF : ((32'd1 << o_eo) - 32'd1);
    integer bc;
    reg signed [31:0] bs, tot;
    reg [OBF-1:0]     boa, pwa;
    reg [PBF-1:0]     pba;
    reg [15:0]        cbit;
    reg [CW-1:0]      cb;
    always @(posedge clk) begin
        for (bc = 0; bc < C; bc = bc + 1) begin
            /*verilator unroll_disable*/
            bot_v[bc] <= 1'b0;
            if (ch_vld[R+bc]) begin
                cb = ch[R+bc];
                bs = (cb[F_FIRST] ? 32'sd0 : acc[bc]) + bot_in[bc];
                acc[bc] <= bs;
                if (cb[F_LAST]) begin
                    boa = OBF'(cb[F_OROW +: OBA]) * OBF'(C) + OBF'(bc);
                    tot = (cb[F_OW] ? 32'sd0 : obuf[boa]) + bs;
                    if (pk_mode && cb[F_FIN]) begin
                        cbit = 16'(bc) * 16'(o_eo);
                        pwa = (cb[F_OSLOT] ? OBF'(OB_DEPTH / 2 * C) : {OBF{1'b0}}) + pk_base +
                              cb[F_PROW +: OBF] * pk_pitch + OBF'(cbit >> 5);
                        pba = (cb[F_PSLOT] ? PBF'(PBW) : {PBF{1'b0}}) + PBF'(3 * bc);
                        bot_v[bc] <= 1'b1; bot_tot[bc] <= tot; bot_pfl[bc] <= {cb[F_PL], cb[F_PF]};
                        bot_tag[bc] <= {pwa, cbit[4:0]};
                        bot_b[bc] <= pbuf[pba]; bot_m[bc] <= pbuf[pba + PBF'(1)]; bot_s[bc] <= pbuf[pba + PBF'(2)];
                    end else begin
                        obuf[boa] <= tot;
                    end
                end
            end
            // the code an output unit finished: into its bits of the packed row
            if (ou_v[bc])
                obuf[ou_tag[bc][OBF+4:5]] <= (obuf[ou_tag[bc][OBF+4:5]] & ~(emask << ou_tag[bc][4:0])) |
                                              (ou_code[bc] << ou_tag[bc][4:0]);
        end
    end
    generate
        for (g = 0; g < C; g = g + 1) begin : outu
            bf_out_unit #(.TW(OBF + 5)) ou (
                .clk(clk), .out_bits(o_bits), .out_signed(o_signed), .relu(o_relu), .pool(o_pool),
                .pool_n(o_pool_n), .recip_m(o_rm), .recip_k(o_rk),
                .in_v(bot_v[g]), .in_acc(bot_tot[g]), .in_pf(bot_pfl[g][0]), .in_pl(bot_pfl[g][1]),
                .bias(bot_b[g]), .mult(bot_m[g]), .shift(bot_s[g][5:0]), .chan_ok(bot_s[g][8]), .in_tag(bot_tag[g]),
                .out_v(ou_v[g]), .out_code(ou_code[g]), .out_tag(ou_tag[g]));
        end
    endgenerate
endmodule


// The output unit of one array column (rtl_sims/bitfusion/outunit.py is its value model).
//
// Stage 1: v = acc + bias (33 bits), t = v * mult (66 bits).
// Stage 2: requantisation of the numeric spec (kernels/include/mico_kernels.h mico_requant):
//   y = (t >>> s) + ((t >>> (s-1)) & 1)   (== (t + 2^(s-1)) >> s without overflow), s in 1..62
//   ReLU, clamp to [-2^(b-1), 2^(b-1)-1] (signed) or [0, 2^b-1] (unsigned);
//   out_bits 1: +1 if v >= 0 else -1; out_bits 0: v as int32 (logits);
// then pooling over the rows of one window (in_pf .. in_pl): max, or the sum, and on the
// last row avg = ((2*sum + n*(1 + 2^e)) * recip_m >> recip_k) - 2^(e-1), which the compiler
// proved equal to floor((2*sum + n) / (2*n)) for every sum (outunit.avg_recip);
// the code is the value's low e bits (e = 2, 4, 8 or 32, the container), 0 for a padding
// column (chan_ok low).  out_v pulses on the window's last row, 2 cycles after in_v.
module bf_out_unit #(
    parameter integer TW = 8
) (
    input  wire               clk,
    input  wire [3:0]         out_bits,
    input  wire               out_signed,
    input  wire               relu,
    input  wire [1:0]         pool,       // 0 none, 1 max, 2 avg
    input  wire [7:0]         pool_n,
    input  wire [19:0]        recip_m,
    input  wire [5:0]         recip_k,
    input  wire               in_v,
    input  wire signed [31:0] in_acc,
    input  wire               in_pf,
    input  wire               in_pl,
    input  wire [31:0]        bias,
    input  wire [31:0]        mult,
    input  wire [5:0]         shift,
    input  wire               chan_ok,
    input  wire [TW-1:0]      in_tag,
    output reg                out_v,
    output reg  [31:0]        out_code,
    output reg  [TW-1:0]      out_tag
);
    reg               v1, pf1, pl1, ok1;
    reg signed [32:0] s1;
    reg signed [65:0] t1;
    reg [5:0]         sh1;
    reg [TW-1:0]      tag1;
    reg signed [33:0] pacc;
    always @(posedge clk) begin
        v1 <= in_v;
        if (in_v) begin
            s1 <= 33'(in_acc) + 33'($signed(bias));
            t1 <= (66'(in_acc) + 66'($signed(bias))) * $signed({34'd0, mult});
            sh1 <= shift; pf1 <= in_pf; pl1 <= in_pl; ok1 <= chan_ok; tag1 <= in_tag;
        end
    end

    wire [5:0]  eo = (out_bits == 4'd0) ? 6'd32 : (out_bits <= 4'd2) ? 6'd2 : (out_bits <= 4'd4) ? 6'd4 : 6'd8;
    wire [31:0] emask = (eo == 6'd32) ? 32'hFFFFFFFF : ((32'd1 << eo) - 32'd1);
    // stage 2 works only on a valid value (blocking temporaries inside the clocked block)
    reg signed [65:0] r, lo, hi;
    reg signed [33:0] y, pnew;
    reg signed [63:0] xx, q;
    reg [31:0]        val;
    always @(posedge clk) begin
        out_v <= v1 && pl1;
        if (v1) begin
            r = (t1 >>> sh1) + ((t1 >>> (sh1 - 6'd1)) & 66'sd1);
            if (relu && r < 0) r = 66'sd0;
            lo = out_signed ? -(66'sd1 <<< (out_bits - 4'd1)) : 66'sd0;
            hi = out_signed ? (66'sd1 <<< (out_bits - 4'd1)) - 66'sd1 : (66'sd1 <<< out_bits) - 66'sd1;
            if (out_bits == 4'd0)
                y = 34'($signed(s1[31:0]));
            else if (out_bits == 4'd1)
                y = (s1 >= 0) ? 34'sd1 : -34'sd1;
            else
                y = (r < lo) ? 34'(lo) : (r > hi) ? 34'(hi) : 34'(r);
            if (pf1 || pool == 2'd0)
                pnew = y;
            else if (pool == 2'd1)
                pnew = (y > pacc) ? y : pacc;
            else
                pnew = pacc + y;
            pacc <= pnew;
            if (pl1) begin
                if (pool == 2'd2) begin
                    xx = (64'(pnew) <<< 1) + $signed(64'(pool_n) + (64'(pool_n) << eo));
                    q = ((xx * $signed({44'd0, recip_m})) >>> recip_k) - (64'sd1 <<< (eo - 6'd1));
                    val = q[31:0];
                end else begin
                    val = pnew[31:0];
                end
                out_code <= ok1 ? (val & emask) : 32'd0;
                out_tag <= tag1;
            end
        end
    end
endmodule

`default_nettype wire
