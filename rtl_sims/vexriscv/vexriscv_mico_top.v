// vexriscv-mico: VexRiscv_FullCfu with the MiCo-style mixed-precision SIMD unit on its CFU port.
// The ports are those of every other VexRiscv variant, so the same testbench drives it.
module vexriscv_mico_top (
  input      [31:0]   externalResetVector,
  input               timerInterrupt,
  input               softwareInterrupt,
  input      [31:0]   externalInterruptArray,
  output              iBusWishbone_CYC,
  output              iBusWishbone_STB,
  input               iBusWishbone_ACK,
  output              iBusWishbone_WE,
  output     [29:0]   iBusWishbone_ADR,
  input      [31:0]   iBusWishbone_DAT_MISO,
  output     [31:0]   iBusWishbone_DAT_MOSI,
  output     [3:0]    iBusWishbone_SEL,
  input               iBusWishbone_ERR,
  output     [2:0]    iBusWishbone_CTI,
  output     [1:0]    iBusWishbone_BTE,
  output              dBusWishbone_CYC,
  output              dBusWishbone_STB,
  input               dBusWishbone_ACK,
  output              dBusWishbone_WE,
  output     [29:0]   dBusWishbone_ADR,
  input      [31:0]   dBusWishbone_DAT_MISO,
  output     [31:0]   dBusWishbone_DAT_MOSI,
  output     [3:0]    dBusWishbone_SEL,
  input               dBusWishbone_ERR,
  output     [2:0]    dBusWishbone_CTI,
  output     [1:0]    dBusWishbone_BTE,
  input               clk,
  input               reset
);
  wire          cfu_cmd_valid;
  wire          cfu_cmd_ready;
  wire [9:0]    cfu_cmd_function_id;
  wire [31:0]   cfu_cmd_inputs_0;
  wire [31:0]   cfu_cmd_inputs_1;
  wire          cfu_rsp_valid;
  wire          cfu_rsp_ready;
  wire [31:0]   cfu_rsp_outputs_0;

  VexRiscv core (
    .externalResetVector                   (externalResetVector),
    .timerInterrupt                        (timerInterrupt),
    .softwareInterrupt                     (softwareInterrupt),
    .externalInterruptArray                (externalInterruptArray),
    .CfuPlugin_bus_cmd_valid               (cfu_cmd_valid),
    .CfuPlugin_bus_cmd_ready               (cfu_cmd_ready),
    .CfuPlugin_bus_cmd_payload_function_id (cfu_cmd_function_id),
    .CfuPlugin_bus_cmd_payload_inputs_0    (cfu_cmd_inputs_0),
    .CfuPlugin_bus_cmd_payload_inputs_1    (cfu_cmd_inputs_1),
    .CfuPlugin_bus_rsp_valid               (cfu_rsp_valid),
    .CfuPlugin_bus_rsp_ready               (cfu_rsp_ready),
    .CfuPlugin_bus_rsp_payload_outputs_0   (cfu_rsp_outputs_0),
    .iBusWishbone_CYC                      (iBusWishbone_CYC),
    .iBusWishbone_STB                      (iBusWishbone_STB),
    .iBusWishbone_ACK                      (iBusWishbone_ACK),
    .iBusWishbone_WE                       (iBusWishbone_WE),
    .iBusWishbone_ADR                      (iBusWishbone_ADR),
    .iBusWishbone_DAT_MISO                 (iBusWishbone_DAT_MISO),
    .iBusWishbone_DAT_MOSI                 (iBusWishbone_DAT_MOSI),
    .iBusWishbone_SEL                      (iBusWishbone_SEL),
    .iBusWishbone_ERR                      (iBusWishbone_ERR),
    .iBusWishbone_CTI                      (iBusWishbone_CTI),
    .iBusWishbone_BTE                      (iBusWishbone_BTE),
    .dBusWishbone_CYC                      (dBusWishbone_CYC),
    .dBusWishbone_STB                      (dBusWishbone_STB),
    .dBusWishbone_ACK                      (dBusWishbone_ACK),
    .dBusWishbone_WE                       (dBusWishbone_WE),
    .dBusWishbone_ADR                      (dBusWishbone_ADR),
    .dBusWishbone_DAT_MISO                 (dBusWishbone_DAT_MISO),
    .dBusWishbone_DAT_MOSI                 (dBusWishbone_DAT_MOSI),
    .dBusWishbone_SEL                      (dBusWishbone_SEL),
    .dBusWishbone_ERR                      (dBusWishbone_ERR),
    .dBusWishbone_CTI                      (dBusWishbone_CTI),
    .dBusWishbone_BTE                      (dBusWishbone_BTE),
    .clk                                   (clk),
    .reset                                 (reset)
  );

  mico_simd_cfu cfu (
    .clk             (clk),
    .reset           (reset),
    .cmd_valid       (cfu_cmd_valid),
    .cmd_ready       (cfu_cmd_ready),
    .cmd_function_id (cfu_cmd_function_id),
    .cmd_inputs_0    (cfu_cmd_inputs_0),
    .cmd_inputs_1    (cfu_cmd_inputs_1),
    .rsp_valid       (cfu_rsp_valid),
    .rsp_ready       (cfu_rsp_ready),
    .rsp_outputs_0   (cfu_rsp_outputs_0)
  );
endmodule
