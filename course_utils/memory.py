"""Peak memory of a call, on CUDA (the allocator's own statistics) or on the CPU (resident set sampled)."""

from __future__ import annotations

import gc
import os
import threading
import time
from collections.abc import Callable
from typing import Any

import torch

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def _resident_bytes() -> int | None:
    """This process's resident set size, from /proc on Linux or psutil elsewhere; None if neither works."""
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * _PAGE
    except OSError:
        pass
    try:
        import psutil
    except ImportError:
        return None
    return psutil.Process().memory_info().rss


_MALLOC_TUNED = False


def _tune_malloc() -> None:
    """On glibc, serve every allocation above 64 KiB by mmap so that freeing it returns the memory.

    glibc otherwise raises its mmap threshold after large frees (up to 32 MiB) and keeps later
    blocks on its heap, where reusing them does not show in the resident set: peaks would vanish.
    """
    global _MALLOC_TUNED
    if _MALLOC_TUNED:
        return
    _MALLOC_TUNED = True
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, 64 * 1024)      # M_MMAP_THRESHOLD (fixing it also stops the dynamic adjustment)
        libc.mallopt(-1, 128 * 1024)     # M_TRIM_THRESHOLD
    except (OSError, AttributeError):
        pass


def peak_memory(fn: Callable[[], Any], device: torch.device | str = "cpu", interval: float = 2e-4) -> tuple[Any, int]:
    """Run ``fn()`` and return (its result, peak memory in bytes above what was in use before).

    CUDA: ``torch.cuda.max_memory_allocated`` (exact). CPU: the process's resident memory, sampled
    every ``interval`` seconds by a thread; large tensors are returned to the system when freed, so
    the peak of a call shows up as a bump. It is a measurement, not an accounting: expect a few MB of
    noise, and compare sizes that differ by more than that.
    """
    device = torch.device(device)
    gc.collect()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        result = fn()
        torch.cuda.synchronize(device)
        return result, torch.cuda.max_memory_allocated(device) - before
    _tune_malloc()
    before = _resident_bytes()
    if before is None:
        raise RuntimeError("cannot read this process's memory use on this system (install psutil)")
    peak = [before]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], _resident_bytes() or 0)
            time.sleep(interval)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        result = fn()
    finally:
        peak[0] = max(peak[0], _resident_bytes() or 0)
        done.set()
        sampler.join()
    return result, max(0, peak[0] - before)
