"""Torch's intra-op threads for small, repeated work: on a tiny model or one image, handing work to a
second thread costs more than it saves (measured: the digits CNN optimises about 20× faster on one
thread than on two on a loaded 2-core machine), so repeated work times itself once and keeps what is faster."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator

import torch


@contextlib.contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """Run with ``threads`` torch intra-op threads (None: as they are), then restore the setting."""
    previous = torch.get_num_threads()
    if threads is None or threads == previous:
        yield
        return
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def measured_threads(first: Callable[[], object], second: Callable[[], object], device: torch.device) -> int | None:
    """Run ``first()`` with the current intra-op threads and ``second()`` (the same work again) with one,
    and return the threads for more of that work: 1 unless one thread was over 1.5× slower, else the
    current number. On a GPU, or with one thread already, both simply run and the answer is None."""
    if torch.device(device).type != "cpu" or torch.get_num_threads() == 1:
        first()
        second()
        return None
    start = time.perf_counter()
    first()
    default = time.perf_counter() - start
    start = time.perf_counter()
    with torch_threads(1):
        second()
    one = time.perf_counter() - start
    return 1 if one <= 1.5 * default else torch.get_num_threads()
