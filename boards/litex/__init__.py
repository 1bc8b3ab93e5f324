"""The LiteX side of boards/: the emulated board's SoC build and its simulator."""
