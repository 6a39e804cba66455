"""Assertions whose messages say what was expected and what came."""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence

import torch


def check_shape(tensor: torch.Tensor, expected: Sequence[int | None], name: str = "tensor") -> None:
    """Assert ``tensor.shape`` matches ``expected``; ``None`` matches any size."""
    if not isinstance(tensor, torch.Tensor):
        raise AssertionError(f"{name}: expected a torch.Tensor, got {type(tensor).__name__}")
    got = tuple(tensor.shape)
    want = tuple(expected)
    ok = len(got) == len(want) and all(w is None or w == g for w, g in zip(want, got))
    if not ok:
        shown = tuple("*" if w is None else w for w in want)
        raise AssertionError(f"{name}: expected shape {shown}, got {got}")


def assert_close(
    actual: torch.Tensor,
    expected: torch.Tensor,
    name: str = "value",
    atol: float = 1e-6,
    rtol: float = 1e-5,
) -> None:
    """Assert two tensors agree elementwise, reporting shapes and max abs/rel error."""
    actual = torch.as_tensor(actual)
    expected = torch.as_tensor(expected)
    if actual.shape != expected.shape:
        raise AssertionError(
            f"{name}: expected shape {tuple(expected.shape)}, got {tuple(actual.shape)}"
        )
    a = actual.detach().to("cpu", torch.float64)
    e = expected.detach().to("cpu", torch.float64)
    nan_a, nan_e = torch.isnan(a), torch.isnan(e)
    if not torch.equal(nan_a, nan_e):
        raise AssertionError(
            f"{name}: NaN pattern differs ({int(nan_a.sum())} NaN in actual, "
            f"{int(nan_e.sum())} in expected)"
        )
    positions = (~nan_a).flatten().nonzero()[:, 0]       # flat index of each compared element
    a, e = a[~nan_a], e[~nan_e]
    if a.numel() == 0:
        return
    diff = (a - e).abs()
    bad = diff > atol + rtol * e.abs()
    if bool(bad.any()):
        nonzero = e != 0
        rel = (diff[nonzero] / e[nonzero].abs()).max().item() if bool(nonzero.any()) else float("inf")
        where = bad.nonzero()[:, 0]            # the first elements that differ, both values shown
        shown = where[:SHOWN]
        more = ", ..." if len(where) > SHOWN else ""
        raise AssertionError(
            f"{name}: {int(bad.sum())} of {a.numel()} elements differ "
            f"(shape {tuple(actual.shape)}); max abs error {diff.max().item():.3g}, "
            f"max rel error {rel:.3g}; tolerance atol={atol:g}, rtol={rtol:g}; "
            f"expected {_values(e[shown])}{more}, got {_values(a[shown])}{more}"
            + (f" (at flat positions {positions[shown].tolist()})" if actual.numel() > 1 else "")
        )


SHOWN = 4   # differing elements a failure message shows


def _values(values: torch.Tensor) -> str:
    """A few numbers, readable: ``[0.5, -1.25, 3e-08]``."""
    return "[" + ", ".join(f"{v:.4g}" for v in values.tolist()) + "]"


def python_lines_run(function: Callable, *args) -> int:
    """How many Python lines ``function(*args)`` runs, its callees' included (a loop over n items runs its
    body n times; one tensor operation is one line whatever its size): how tests tell a loop from a
    vectorised answer without timing it. Any tracer set before is put back."""
    count = 0

    def trace(frame, event, arg):
        nonlocal count
        count += event == "line"
        return trace

    previous = sys.gettrace()
    sys.settrace(trace)
    try:
        function(*args)
    finally:
        sys.settrace(previous)
    return count
