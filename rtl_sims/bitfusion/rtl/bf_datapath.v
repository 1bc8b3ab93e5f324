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
// of the reduction and, on the last step, adds it into the output buffer.
//
// Buffers (word = 32 bits; a buffer address names one word in every bank):
//   IBUF  R banks x IB_DEPTH words  (flat index = addr*R + row)
//   WBUF  R*C banks x WB_DEPTH words (one bank per FU; flat = addr*R*C + row*C + col)
//   OBUF  C banks x OB_DEPTH int32   (flat = row*C + col)
// The DMA writes WPB consecutive flat words per cycle (one DRAM beat) and the
// store path reads WPB consecutive flat OBUF words per cycle.
//
// The control signals that accompany an element (valid, weight address and
// shift, output-row tag) are the same for every FU on one anti-diagonal r+c,
// so they travel in one shared delay line (`ch_*`) instead of R*C copies of
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
    parameter integer OBF      = $clog2(C * OB_DEPTH)
) (
    input  wire                 clk,
    // Fusion Unit configuration (decoded precision mode)
    input  wire [63:0]          cfg_aoff,
    input  wire [63:0]          cfg_woff,
    input  wire [15:0]          cfg_asg,
    input  wire [15:0]          cfg_wsg,
    input  wire [63:0]          cfg_sh,
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
    input  wire [2:0]           iss_ev,      // events raised when this element leaves the array
    output wire [2:0]           ev_out,
    // DMA writes into IBUF / WBUF
    input  wire                 ib_we,
    input  wire [IBF-1:0]       ib_wbase,
    input  wire                 wb_we,
    input  wire [WBF-1:0]       wb_wbase,
    input  wire [WPB*32-1:0]    dma_wdata,
    // store path reads OBUF
    input  wire [OBF-1:0]       ob_rbase,
    output wire [WPB*32-1:0]    ob_rdata
);
    localparam integer RC = R * C;
    localparam integer NCH = R + C;   // delay-line stages: FU(r,c) uses stage r+c, column c's bottom R+c

    reg [31:0] ibuf [0:R*IB_DEPTH-1];
    reg [31:0] wbuf [0:RC*WB_DEPTH-1];
    reg [31:0] obuf [0:C*OB_DEPTH-1];

    integer j;
    always @(posedge clk) begin
        if (ib_we)
            for (j = 0; j < WPB; j = j + 1) ibuf[ib_wbase + IBF'(j)] <= dma_wdata[j*32 +: 32];
        if (wb_we)
            for (j = 0; j < WPB; j = j + 1) wbuf[wb_wbase + WBF'(j)] <= dma_wdata[j*32 +: 32];
    end

    genvar g;
    generate
        for (g = 0; g < WPB; g = g + 1) begin : obrd
            assign ob_rdata[g*32 +: 32] = obuf[ob_rbase + OBF'(g)];
        end
    endgenerate

    // ---- shared delay line: stage k holds the element issued k+1 cycles ago ----
    reg              ch_vld   [0:NCH-1];
    reg [WBA-1:0]    ch_waddr [0:NCH-1];
    reg [4:0]        ch_wsh   [0:NCH-1];
    reg              ch_first [0:NCH-1];
    reg              ch_last  [0:NCH-1];
    reg              ch_ow    [0:NCH-1];
    reg [OBA-1:0]    ch_orow  [0:NCH-1];
    reg [2:0]        ch_ev    [0:NCH-1];
    integer k;
    always @(posedge clk) begin
        ch_vld[0] <= iss_vld;
        ch_waddr[0] <= iss_waddr; ch_wsh[0] <= iss_wsh; ch_first[0] <= iss_first; ch_last[0] <= iss_last;
        ch_ow[0] <= iss_ow; ch_orow[0] <= iss_orow; ch_ev[0] <= iss_ev;
        for (k = 1; k < NCH; k = k + 1) begin
            ch_vld[k] <= ch_vld[k-1];
            if (ch_vld[k-1]) begin
                ch_waddr[k] <= ch_waddr[k-1]; ch_wsh[k] <= ch_wsh[k-1]; ch_first[k] <= ch_first[k-1];
                ch_last[k] <= ch_last[k-1]; ch_ow[k] <= ch_ow[k-1]; ch_orow[k] <= ch_orow[k-1];
                ch_ev[k] <= ch_ev[k-1];
            end
        end
    end
    assign ev_out = ch_vld[NCH-1] ? ch_ev[NCH-1] : 3'b000;

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
                wire [31:0] wword = wbuf[WBF'(ch_waddr[r+c]) * WBF'(RC) + WBF'(r*C+c)];
                wire signed [31:0] pin;
                if (r == 0) begin : top
                    assign pin = 32'sd0;
                end else begin : mid
                    assign pin = psum[(r-1)*C+c];
                end
                bf_fusion_unit fu (
                    .clk(clk), .en(ch_vld[r+c]), .a(areg[r*C+c]), .w(wword >> ch_wsh[r+c]),
                    .cfg_aoff(cfg_aoff), .cfg_woff(cfg_woff), .cfg_asg(cfg_asg), .cfg_wsg(cfg_wsg),
                    .cfg_sh(cfg_sh), .psum_in(pin), .psum_out(psum[r*C+c]));
            end
        end
    endgenerate
    // column bottoms: accumulate over the steps, then add into OBUF
    reg signed [31:0] acc [0:C-1];
    generate
        for (c = 0; c < C; c = c + 1) begin : bot
            wire               v   = ch_vld[R+c];
            wire signed [31:0] s   = (ch_first[R+c] ? 32'sd0 : acc[c]) + psum[(R-1)*C+c];
            wire [OBF-1:0]     oa  = OBF'(ch_orow[R+c]) * OBF'(C) + OBF'(c);
            always @(posedge clk) begin
                if (v) begin
                    acc[c] <= s;
                    if (ch_last[R+c]) obuf[oa] <= (ch_ow[R+c] ? 32'd0 : obuf[oa]) + s;
                end
            end
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
    reg signed [31:0] acc  [0:C-1];
    integer fr, fc, bc;
    reg [IBF-1:0] fia;
    reg [WBF-1:0] fwa;
    reg [OBF-1:0] boa;
    reg signed [31:0] bs;
    always @(posedge clk) begin
        // column bottoms: accumulate over the steps, then add into OBUF
        for (bc = 0; bc < C; bc = bc + 1) begin
            /*verilator unroll_disable*/
            if (ch_vld[R+bc]) begin
                bs = (ch_first[R+bc] ? 32'sd0 : acc[bc]) + psum[(R-1)*C+bc];
                acc[bc] = bs;
                if (ch_last[R+bc]) begin
                    boa = OBF'(ch_orow[R+bc]) * OBF'(C) + OBF'(bc);
                    obuf[boa] <= (ch_ow[R+bc] ? 32'd0 : obuf[boa]) + bs;
                end
            end
        end
        for (fr = R - 1; fr >= 0; fr = fr - 1) begin
            /*verilator unroll_disable*/
            for (fc = C - 1; fc >= 0; fc = fc - 1) begin
                /*verilator unroll_disable*/
                if (ch_vld[fr+fc]) begin
                    fwa = WBF'(ch_waddr[fr+fc]) * WBF'(RC) + WBF'(fr*C+fc);
                    psum[fr*C+fc] = ((fr == 0) ? 32'sd0 : psum[(fr-1)*C+fc]) +
                                    fu_dot(areg[fr*C+fc], wbuf[fwa] >> ch_wsh[fr+fc], cfg_aoff, cfg_woff,
                                           cfg_asg, cfg_wsg, cfg_sh);
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
`endif
endmodule

`default_nettype wire
