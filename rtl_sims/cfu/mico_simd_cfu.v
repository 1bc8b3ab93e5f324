// mico_simd_cfu: MiCo-style mixed-precision SIMD dot-product unit, as a
// VexRiscv CFU (CfuPlugin bus of VexRiscv_FullCfu).  Plain Verilog-2005.
//
// Instruction: custom-0 (opcode 0x0B) R-type,
//     .insn r 0x0B, funct3, funct7, rd, rs1, rs2
// function_id = {funct7[6:0], funct3[2:0]}  (function_id[9:3] = funct7).
//
//   funct7[3:0] = p = ia*4 + iw, ia / iw = index of qa / qw in (1,2,4,8)
//                 (ia = log2 qa, iw = log2 qw).
//   funct7[6:4] = 0 (reserved; any other value returns rd = 0).
//   rs1 = one packed ACTIVATION word (qa bits per element), rs2 = one packed
//   WEIGHT word (qw bits per element), in the DESIGN.md section 3 format:
//   element i at bits [i*b, i*b+b); b >= 2 two's complement, b = 1 code c
//   means the value 2c-1.
//
//   Let wide = max(qa,qw), narrow = min(qa,qw), L = 32/wide lanes,
//   R = wide/narrow, s = funct3.
//     rd = sum_{i<L} val_narrow(s*L + i) * val_wide(i)        (int32)
//   where val_wide(i) is element i of the wider operand's word (the whole
//   word), val_narrow(j) element j of the narrower operand's word (segment s
//   = bits [s*32/R, (s+1)*32/R) of it).  qa == qw: R = 1, L = 32/qa, s must
//   be 0, rd = plain dot product of the two words' 32/qa elements (1x1: 32
//   lanes of +-1 products; zero pad bits are value -1 on both sides, so a
//   padding lane adds +1 - the kernels subtract the pad-lane count).
//   s >= R: rd = 0.
//
//   MACs per instruction: 4 (8-bit wide operand), 8 (4-bit), 16 (2-bit),
//   32 (1x1).  Lane multipliers are sized by lane: lanes 0-3 are 8x8, lanes
//   4-7 4x4, lanes 8-15 2x2, lanes 16-31 1x1 XNOR (a lane is only active when
//   32/wide > lane index, which bounds both operand widths).
//
// Handshake: the command is accepted when cmd_valid && cmd_ready; the result
// appears one cycle later in a register (rsp_valid) and is held until
// rsp_valid && rsp_ready.  cmd_ready = !rsp_valid || rsp_ready, so with
// rsp_ready high the unit takes one command per cycle (VexRiscv CfuPlugin
// with stageCount = 1 consumes the response in the memory stage, i.e. one
// cycle after issuing it in execute: no stall).  reset (synchronous, active
// high) clears rsp_valid.  The dot product is only evaluated on an accepted
// command (cheap in Verilator: it sits inside the clocked block).
`default_nettype none

module mico_simd_cfu (
    input  wire        clk,
    input  wire        reset,
    input  wire        cmd_valid,
    output wire        cmd_ready,
    input  wire [9:0]  cmd_function_id,
    input  wire [31:0] cmd_inputs_0,
    input  wire [31:0] cmd_inputs_1,
    output wire        rsp_valid,
    input  wire        rsp_ready,
    output wire [31:0] rsp_outputs_0
);

    // value of a code of 2^lg bits held in the low bits of c (8-bit signed
    // holds every value: -128..127 and +-1 for 1-bit codes)
    function signed [7:0] dec;
        input [7:0] c;
        input [1:0] lg;
        begin
            case (lg)
                2'd0:    dec = c[0] ? 8'sd1 : -8'sd1;
                2'd1:    dec = {{6{c[1]}}, c[1:0]};
                2'd2:    dec = {{4{c[3]}}, c[3:0]};
                default: dec = c;
            endcase
        end
    endfunction

    function [31:0] simd_dot;
        input [9:0]  fid;
        input [31:0] act;
        input [31:0] wgt;
        reg [1:0]  lga, lgw, lgx, lgn, rl;
        reg [2:0]  seg;
        reg [4:0]  soff;
        reg [31:0] xw, nw;
        // lane i's code is the low bits of the shifted word (only bits 7:0
        // are ever read: waiver for the unused upper bits)
        /* verilator lint_off UNUSEDSIGNAL */
        reg [31:0] tx, tn;
        /* verilator lint_on UNUSEDSIGNAL */
        reg signed [7:0]  vx, vn;
        reg signed [15:0] p8;
        reg signed [7:0]  p4;
        reg signed [3:0]  p2;
        reg signed [19:0] acc;
        integer i;
        begin
            lga = fid[6:5];
            lgw = fid[4:3];
            seg = fid[2:0];
            if (lga >= lgw) begin
                lgx = lga; lgn = lgw; xw = act; nw = wgt;
            end else begin
                lgx = lgw; lgn = lga; xw = wgt; nw = act;
            end
            rl = lgx - lgn;                                 // log2 R
            soff = {2'b00, seg} << (3'd5 - {1'b0, rl});     // segment bit offset
            nw = nw >> soff;
            acc = 20'sd0;
            for (i = 0; i < 32; i = i + 1) begin
                if (i < (32 >> lgx)) begin
                    tx = xw >> (i << lgx);
                    tn = nw >> (i << lgn);
                    vx = dec(tx[7:0], lgx);
                    vn = dec(tn[7:0], lgn);
                    if (i < 4) begin                        // 8x8 lanes
                        p8 = vx * vn;
                        acc = acc + {{4{p8[15]}}, p8};
                    end else if (i < 8) begin               // 4x4 lanes
                        p4 = $signed(vx[3:0]) * $signed(vn[3:0]);
                        acc = acc + {{12{p4[7]}}, p4};
                    end else if (i < 16) begin              // 2x2 lanes
                        p2 = $signed(vx[1:0]) * $signed(vn[1:0]);
                        acc = acc + {{16{p2[3]}}, p2};
                    end else begin                          // 1x1 lanes (XNOR)
                        acc = acc + ((tx[0] ~^ tn[0]) ? 20'sd1 : -20'sd1);
                    end
                end
            end
            if (fid[9:7] != 3'd0 || ({1'b0, seg} >> rl) != 4'd0)
                simd_dot = 32'd0;
            else
                simd_dot = {{12{acc[19]}}, acc};
        end
    endfunction

    reg        rsp_valid_q;
    reg [31:0] rsp_data_q;
    wire       fire = cmd_valid & cmd_ready;

    assign cmd_ready     = ~rsp_valid_q | rsp_ready;
    assign rsp_valid     = rsp_valid_q;
    assign rsp_outputs_0 = rsp_data_q;

    always @(posedge clk) begin
        if (reset)
            rsp_valid_q <= 1'b0;
        else if (fire)
            rsp_valid_q <= 1'b1;
        else if (rsp_ready)
            rsp_valid_q <= 1'b0;
    end

    always @(posedge clk) begin
        if (fire)
            rsp_data_q <= simd_dot(cmd_function_id, cmd_inputs_0, cmd_inputs_1);
    end

endmodule

`default_nettype wire
