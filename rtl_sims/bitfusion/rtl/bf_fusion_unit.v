// BitFusion building blocks (Sharma et al., ISCA 2018), Verilog-2005 (+ sized casts).
//
//   bitbrick        (bf_fu_dot.vh) one 2-bit x 2-bit multiplier; each operand
//                   slice is signed (the top slice of a signed value) or
//                   unsigned (every other slice, and every slice of an unsigned
//                   value): the slice is extended to 3 bits, the 3x3 signed
//                   product fits 6 bits.
//   bf_fu_cfg       the fusion decoder: for a precision mode (qa, qw in {2,4,8},
//                   signed or unsigned operands) it gives every one of the 16
//                   bricks its activation/weight slice offset, its two sign
//                   flags and its shift in the shift-add tree.
//   bf_fusion_unit  16 BitBricks + the shift-add tree (fu_dot in bf_fu_dot.vh,
//                   shared with the array).  Per cycle it consumes
//                   one activation word and one weight word holding P values
//                   each (P = 16 / ((qa/2)*(qw/2)): one 8x8, two 8x4/4x8, four
//                   4x4/8x2/2x8, eight 4x2/2x4 or sixteen 2x2 products, value p
//                   at bits [p*q, p*q+q)) and adds the P products to psum_in.
//
// In BitFusion all products a Fusion Unit forms in one cycle belong to the
// same output (a dot product along the reduction dimension), so the tree adds
// every brick: level 1 shifts each brick by 2*(ia+iw) (ia, iw: the slice
// indices inside its product) and sums groups of four, level 2 sums the four
// groups.  The shifts are 0 for 2x2, {0,2} for 4x2, {0,2,4} for 4x4 ... up to
// {0..12} for 8x8.
`default_nettype none

// qa_code / qw_code: 0 = 2 bits, 1 = 4 bits, 2 = 8 bits (3 is treated as 8).
// Offsets and shifts are always even: they are stored halved, 4 bits per brick.
module bf_fu_cfg (
    input  wire [1:0]  qa_code,
    input  wire [1:0]  qw_code,
    input  wire        a_signed,
    input  wire        w_signed,
    output reg  [63:0] aoff,    // 16 x 4 bits: activation slice offset / 2 of brick j
    output reg  [63:0] woff,    // 16 x 4 bits: weight slice offset / 2
    output reg  [15:0] asg,     // brick j's activation slice is signed
    output reg  [15:0] wsg,     // brick j's weight slice is signed
    output reg  [63:0] sh       // 16 x 4 bits: left shift / 2 of brick j's product
);
    integer j, la, lw, p, jj, ia, iw, na, nw;
    always @* begin
        la = (qa_code > 2'd2) ? 2 : {30'd0, qa_code};   // log2(slices per activation value)
        lw = (qw_code > 2'd2) ? 2 : {30'd0, qw_code};
        na = 1 << la;
        nw = 1 << lw;
        aoff = 64'd0; woff = 64'd0; asg = 16'd0; wsg = 16'd0; sh = 64'd0;
        for (j = 0; j < 16; j = j + 1) begin
            p  = j >> (la + lw);             // product index inside the unit
            jj = j & ((1 << (la + lw)) - 1); // brick index inside the product
            ia = jj >> lw;
            iw = jj & (nw - 1);
            aoff[j*4 +: 4] = 4'(p * na + ia);
            woff[j*4 +: 4] = 4'(p * nw + iw);
            asg[j] = a_signed && (ia == na - 1);
            wsg[j] = w_signed && (iw == nw - 1);
            sh[j*4 +: 4] = 4'(ia + iw);
        end
    end
endmodule

// One Fusion Unit.  Each call of `bitbrick` is one of the 16 BitBricks (a
// 2-bit x 2-bit signed/unsigned multiplier); `psum_out` registers
// psum_in + the shift-add tree of the 16 brick products.
module bf_fusion_unit (
    input  wire               clk,
    input  wire               en,
    input  wire [31:0]        a,
    input  wire [31:0]        w,
    input  wire [63:0]        cfg_aoff,
    input  wire [63:0]        cfg_woff,
    input  wire [15:0]        cfg_asg,
    input  wire [15:0]        cfg_wsg,
    input  wire [63:0]        cfg_sh,
    input  wire signed [31:0] psum_in,
    output reg  signed [31:0] psum_out
);
`include "bf_fu_dot.vh"

    always @(posedge clk) begin
        if (en) psum_out <= psum_in + fu_dot(a, w, cfg_aoff, cfg_woff, cfg_asg, cfg_wsg, cfg_sh);
    end
endmodule

// The unit under cocotb: decoder + one Fusion Unit (psum_in from a port).
module bf_fu_wrap (
    input  wire               clk,
    input  wire               en,
    input  wire [1:0]         qa_code,
    input  wire [1:0]         qw_code,
    input  wire               a_signed,
    input  wire               w_signed,
    input  wire [31:0]        a,
    input  wire [31:0]        w,
    input  wire signed [31:0] psum_in,
    output wire signed [31:0] psum_out
);
    wire [63:0] aoff, woff, sh;
    wire [15:0] asg, wsg;
    bf_fu_cfg cfg (.qa_code(qa_code), .qw_code(qw_code), .a_signed(a_signed), .w_signed(w_signed),
                   .aoff(aoff), .woff(woff), .asg(asg), .wsg(wsg), .sh(sh));
    bf_fusion_unit fu (.clk(clk), .en(en), .a(a), .w(w), .cfg_aoff(aoff), .cfg_woff(woff), .cfg_asg(asg),
                       .cfg_wsg(wsg), .cfg_sh(sh), .psum_in(psum_in), .psum_out(psum_out));
endmodule

`default_nettype wire
