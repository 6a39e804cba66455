"""A training loop that knows nothing about the model: it calls ``loss_fn(model, batch)``."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import torch
from tqdm.auto import tqdm


@dataclass
class History:
    """What a run produced: the loss at each step and metrics at each evaluation."""

    steps: list[int] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    evals: list[tuple[int, dict[str, float]]] = field(default_factory=list)
    seconds: float = 0.0
    stopped_by: str = "steps"

    def last(self, metric: str) -> float:
        """Return the latest evaluated value of ``metric``."""
        for _, metrics in reversed(self.evals):
            if metric in metrics:
                return metrics[metric]
        raise KeyError(f"no evaluation recorded {metric!r}; recorded: {sorted({k for _, m in self.evals for k in m})}")


def move_to(batch: Any, device: torch.device | str) -> Any:
    """Move every tensor inside a (nested) batch to ``device``."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, (list, tuple)):
        return type(batch)(move_to(b, device) for b in batch)
    if isinstance(batch, dict):
        return {k: move_to(v, device) for k, v in batch.items()}
    return batch


def fit(
    model: torch.nn.Module,
    loss_fn: Callable[[torch.nn.Module, Any], torch.Tensor],
    batches: Iterable[Any],
    optimizer: torch.optim.Optimizer,
    steps: int,
    *,
    device: torch.device | str | None = None,
    scheduler: Any | None = None,
    clip_grad_norm: float | None = 1.0,
    time_budget_s: float | None = None,
    eval_fn: Callable[[torch.nn.Module], dict[str, float]] | None = None,
    eval_every: int | None = None,
    progress: bool = True,
    description: str = "training",
) -> History:
    """Train for ``steps`` optimiser steps (cycling over ``batches``) and return the History.

    ``loss_fn(model, batch)`` returns a scalar loss; batches are moved to ``device``.
    ``time_budget_s`` stops early once that many seconds have passed (``stopped_by`` says so).
    ``eval_fn(model)`` runs every ``eval_every`` steps and at the end, under ``torch.no_grad``
    with the model in eval mode, and returns named metrics.
    """
    if steps <= 0:
        raise ValueError(f"steps must be positive, got {steps}")
    device = torch.device(device) if device is not None else next(model.parameters()).device
    history = History()
    start = time.perf_counter()

    def evaluate(step: int) -> None:
        if eval_fn is None:
            return
        model.eval()
        with torch.no_grad():
            metrics = {k: float(v) for k, v in eval_fn(model).items()}
        model.train()
        history.evals.append((step, metrics))
        bar.set_postfix({k: f"{v:.3g}" for k, v in metrics.items()}, refresh=False)

    model.train()
    stream = itertools.chain.from_iterable(itertools.repeat(batches))
    bar = tqdm(total=steps, desc=description, disable=not progress, mininterval=0.5)
    step = 0
    for step, batch in enumerate(stream, start=1):
        loss = loss_fn(model, move_to(batch, device))
        if not torch.isfinite(loss):
            bar.close()
            raise FloatingPointError(f"loss became {loss.item()} at step {step}; lower the learning rate")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if clip_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip_grad_norm)
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        history.steps.append(step)
        history.losses.append(loss.item())
        bar.update(1)
        if step % 20 == 0:
            bar.set_postfix(loss=f"{history.losses[-1]:.3f}", refresh=False)
        if eval_every and step % eval_every == 0 and step < steps:
            evaluate(step)
        if step >= steps:
            break
        if time_budget_s is not None and time.perf_counter() - start > time_budget_s:
            history.stopped_by = "time budget"
            break
    evaluate(step)
    bar.close()
    history.seconds = time.perf_counter() - start
    return history


def count_parameters(model: torch.nn.Module, trainable_only: bool = True) -> int:
    """Return the number of (trainable) parameters of a model."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def format_count(n: float) -> str:
    """Format a count as 1.2k / 3.4M / 5.6B."""
    for unit, size in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= size:
            return f"{n / size:.1f}{unit}"
    return f"{n:.0f}" if float(n).is_integer() else f"{n:.3g}"


__all__ = ["History", "count_parameters", "fit", "format_count", "move_to"]
