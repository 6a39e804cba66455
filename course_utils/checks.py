"""Assertions whose messages say what was expected and what came."""

from __future__ import annotations

from collections.abc import Sequence

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
    a, e = a[~nan_a], e[~nan_e]
    if a.numel() == 0:
        return
    diff = (a - e).abs()
    bad = diff > atol + rtol * e.abs()
    if bool(bad.any()):
        rel = (diff / e.abs().clamp_min(1e-300)).max().item()
        raise AssertionError(
            f"{name}: {int(bad.sum())} of {a.numel()} elements differ "
            f"(shape {tuple(actual.shape)}); max abs error {diff.max().item():.3g}, "
            f"max rel error {rel:.3g}; tolerance atol={atol:g}, rtol={rtol:g}"
        )
