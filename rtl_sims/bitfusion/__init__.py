"""BitFusion (Sharma et al., ISCA 2018): Verilog RTL of the bit-level fusible
accelerator, its compiler, a Verilator testbench and an analytical model.

Targets (registered by ``rtl_sims.bitfusion.targets`` through the
``mico.targets`` entry point): ``bitfusion-rtl`` and ``bitfusion-model``.
See docs/bitfusion.md.
"""
