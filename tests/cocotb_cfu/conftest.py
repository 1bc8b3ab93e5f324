# test_cfu.py is a cocotb test module: it runs inside the simulator, started by
# tests/test_cfu_cocotb.py, never collected by pytest itself.
collect_ignore = ["test_cfu.py"]
