"""Small shared helpers."""

from __future__ import annotations

import contextlib

import torch

#: these models are tiny: one intra-op thread is fastest, and on a shared
#: machine more threads made a training step 10-40x SLOWER (measured: 2 ms vs
#: 24-120 ms per LeNet step on 2 busy cores)
DEFAULT_THREADS = 1


@contextlib.contextmanager
def torch_threads(n: int | None = DEFAULT_THREADS):
    """Temporarily cap torch's intra-op threads at ``n`` (None: leave as is)."""
    if n is None:
        yield
        return
    old = torch.get_num_threads()
    torch.set_num_threads(max(1, min(int(n), old)))
    try:
        yield
    finally:
        torch.set_num_threads(old)
