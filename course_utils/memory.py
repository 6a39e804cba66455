"""Peak memory of a call: the CUDA allocator's own statistics on a GPU, an exact count of live tensors on a CPU."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Callable
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves


def _key(tensor: torch.Tensor) -> int:
    """The storage's identity, or 0 for tensors without one of their own (sparse, nested)."""
    try:
        return tensor.untyped_storage()._cdata
    except (RuntimeError, NotImplementedError):
        return 0


class _LiveTensorBytes(TorchDispatchMode):
    """Counts the bytes of every tensor storage that an operator creates while active, until it is freed.

    Each new storage is added when an operator returns it and subtracted when Python's weak
    reference to it fires (the storage is gone, not just one tensor viewing it). Views and in-place
    results share their input's storage and are not new memory. Workspace a single kernel allocates and frees
    inside itself is not a tensor and is not counted, as on CUDA it would be.
    """

    def __init__(self) -> None:
        super().__init__()
        self.now = 0
        self.peak = 0
        self._alive: dict[int, weakref.ref] = {}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        inputs = {_key(leaf) for leaf in tree_leaves((args, kwargs)) if isinstance(leaf, torch.Tensor)}
        out = func(*args, **kwargs)
        for leaf in tree_leaves(out):
            if isinstance(leaf, torch.Tensor) and leaf.device.type != "meta" and _key(leaf) not in inputs | {0}:
                self._count(leaf.untyped_storage())
        return out

    def _count(self, storage: torch.UntypedStorage) -> None:
        key = storage._cdata
        if key in self._alive:
            return
        size = storage.nbytes()
        self.now += size
        self.peak = max(self.peak, self.now)
        self._alive[key] = weakref.ref(storage, lambda _, key=key, size=size: self._free(key, size))

    def _free(self, key: int, size: int) -> None:
        if self._alive.pop(key, None) is not None:
            self.now -= size


def peak_memory(fn: Callable[[], Any], device: torch.device | str = "cpu") -> tuple[Any, int]:
    """Run ``fn()`` and return (its result, peak bytes of tensors it held at once, above what was in use before).

    CUDA: ``torch.cuda.max_memory_allocated`` less what was allocated before. CPU: every storage an
    operator creates during the call (forward, backward and recomputation alike) is counted until it
    is freed, and the largest total is the peak. Both are accountings, not samples: the same call
    gives the same figure every time, however busy the machine is.
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
    with _LiveTensorBytes() as live:
        result = fn()
    return result, live.peak
