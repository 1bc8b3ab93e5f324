// The Fusion Unit's arithmetic, shared by bf_fusion_unit and the array (bf_datapath):
//   bitbrick   one 2-bit x 2-bit multiplier: each slice is unsigned (0..3) or,
//              as the top slice of a signed value, signed (-2..1); the product
//              (-6..9) fits 6 bits
//   fu_dot     16 BitBricks with the slice routing of the fusion configuration
//              and the shift-add tree: each brick's product shifted by 2*(ia+iw),
//              four groups of four summed, then the four group sums
// Included inside a module body.

    function automatic integer bitbrick(input [1:0] as, input asgn, input [1:0] ws, input wsgn);
        integer ax, wx;
        begin
            ax = {30'd0, as} - ((asgn && as[1]) ? 4 : 0);
            wx = {30'd0, ws} - ((wsgn && ws[1]) ? 4 : 0);
            bitbrick = ax * wx;
        end
    endfunction

    function automatic signed [31:0] fu_dot(input [31:0] fa, input [31:0] fw, input [63:0] aoff, input [63:0] woff,
                                            input [15:0] asg, input [15:0] wsg, input [63:0] sh);
        integer bj, bq, grp, tot;
        reg [31:0] as_w, ws_w;
        begin
            tot = 0;
            for (bq = 0; bq < 4; bq = bq + 1) begin
                grp = 0;
                for (bj = 4 * bq; bj < 4 * bq + 4; bj = bj + 1) begin
                    as_w = fa >> {aoff[bj*4 +: 4], 1'b0};
                    ws_w = fw >> {woff[bj*4 +: 4], 1'b0};
                    grp = grp + (bitbrick(as_w[1:0], asg[bj], ws_w[1:0], wsg[bj]) <<< {sh[bj*4 +: 4], 1'b0});
                end
                tot = tot + grp;
            end
            fu_dot = tot;
        end
    endfunction
