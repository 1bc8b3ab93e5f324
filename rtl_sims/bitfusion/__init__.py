"""BitFusion (Sharma et al., ISCA 2018): Verilog RTL of the bit-level fusible
accelerator, its compiler, a Verilator testbench and an analytical model.

Targets (registered by ``rtl_sims.bitfusion.targets`` through the
``mico.targets`` entry point): ``bitfusion-rtl`` and ``bitfusion-model``.
Kernels compile with ``compiler.compile_kernel`` (int32 outputs); whole layers
(bias, requantisation, ReLU, pooling on the array, packed outputs that the
next layer reads where they lie) with ``layer.compile_layer``; ``outunit`` is
the output unit's value model.  See docs/bitfusion.md.
"""
