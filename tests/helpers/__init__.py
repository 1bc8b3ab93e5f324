"""Helpers shared by tests: Hypothesis strategies for shapes, bit-widths and
protocol frames, the ASan/UBSan build of the host firmware, a raw frame link
and a scripted fake device for crafted replies."""
