"""Figures a person would rather look at than read: attention maps, curves, PE, embeddings."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure


def _to_numpy(values) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        return values.detach().to("cpu", torch.float32).numpy()
    return np.asarray(values, dtype=np.float32)


def show_attention(
    weights,
    queries: Sequence[str] | None = None,
    keys: Sequence[str] | None = None,
    ax: Axes | None = None,
    title: str | None = None,
    cmap: str = "viridis",
) -> Axes:
    """Draw one (queries, keys) attention matrix with token labels on both axes."""
    matrix = _to_numpy(weights)
    if matrix.ndim != 2:
        raise ValueError(f"show_attention expects (queries, keys), got shape {matrix.shape}")
    if ax is None:
        _, ax = plt.subplots(figsize=(max(3, 0.35 * matrix.shape[1] + 1.5), max(2.5, 0.35 * matrix.shape[0] + 1)))
    image = ax.imshow(matrix, cmap=cmap, vmin=0.0, vmax=max(1e-9, float(matrix.max())), aspect="auto")
    if keys is not None:
        ax.set_xticks(range(len(keys)), labels=list(keys), rotation=90)
    if queries is not None:
        ax.set_yticks(range(len(queries)), labels=list(queries))
    ax.set_xlabel("keys (attended to)")
    ax.set_ylabel("queries")
    if title:
        ax.set_title(title)
    ax.figure.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    return ax


def show_attention_grid(
    weights,
    queries: Sequence[str] | None = None,
    keys: Sequence[str] | None = None,
    titles: Sequence[str] | None = None,
    columns: int = 4,
) -> Figure:
    """Draw a grid of attention matrices, one per head: weights is (heads, queries, keys)."""
    stack = _to_numpy(weights)
    if stack.ndim != 3:
        raise ValueError(f"show_attention_grid expects (heads, queries, keys), got shape {stack.shape}")
    heads = stack.shape[0]
    columns = min(columns, heads)
    rows = math.ceil(heads / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(3.2 * columns, 3.0 * rows), squeeze=False)
    for h, ax in enumerate(axes.flat):
        if h >= heads:
            ax.axis("off")
            continue
        show_attention(stack[h], queries, keys, ax=ax, title=titles[h] if titles else f"head {h}")
    fig.tight_layout()
    return fig


def plot_curves(
    curves: Mapping[str, Sequence[float]],
    xlabel: str = "step",
    ylabel: str = "loss",
    ax: Axes | None = None,
    log_y: bool = False,
    smooth: int = 1,
) -> Axes:
    """Plot named curves (e.g. train and validation loss) on one axis."""
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 3.5))
    for name, values in curves.items():
        y = np.asarray(values, dtype=float)
        if smooth > 1 and len(y) >= smooth:
            y = np.convolve(y, np.ones(smooth) / smooth, mode="valid")
        ax.plot(np.arange(len(y)), y, label=name)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if log_y:
        ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend()
    return ax


def plot_history(history, ax: Axes | None = None, log_y: bool = False) -> Axes:
    """Plot a training History: the loss per step and any evaluated metrics."""
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(history.steps, history.losses, label="train loss", alpha=0.8)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    if log_y:
        ax.set_yscale("log")
    ax.grid(alpha=0.3)
    if history.evals:
        twin = ax.twinx()
        names = sorted({k for _, metrics in history.evals for k in metrics})
        for name in names:
            points = [(s, m[name]) for s, m in history.evals if name in m]
            twin.plot(*zip(*points), marker="o", linestyle="--", label=name)
        twin.set_ylabel("evaluation")
        lines = ax.get_lines() + twin.get_lines()
        ax.legend(lines, [line.get_label() for line in lines], loc="center right")
    else:
        ax.legend()
    return ax


def show_positional_encoding(encoding, ax: Axes | None = None, title: str = "positional encoding") -> Axes:
    """Draw a (positions, d_model) encoding as a heatmap: position down, dimension across."""
    matrix = _to_numpy(encoding)
    if matrix.ndim != 2:
        raise ValueError(f"expected (positions, d_model), got shape {matrix.shape}")
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 3.5))
    image = ax.imshow(matrix, cmap="RdBu", vmin=-1, vmax=1, aspect="auto")
    ax.set_xlabel("dimension")
    ax.set_ylabel("position")
    ax.set_title(title)
    ax.figure.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    return ax


def scatter_embeddings(
    points,
    labels: Sequence[str],
    ax: Axes | None = None,
    title: str | None = None,
    groups: Sequence[int] | None = None,
) -> Axes:
    """Scatter (n, 2) points with a text label beside each; optional colour groups."""
    xy = _to_numpy(points)
    if xy.ndim != 2 or xy.shape[1] != 2 or len(labels) != len(xy):
        raise ValueError(f"expected (n, 2) points and n labels, got {xy.shape} and {len(labels)} labels")
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 5))
    if groups is None:
        ax.scatter(xy[:, 0], xy[:, 1], s=18)
    else:
        ax.scatter(xy[:, 0], xy[:, 1], c=groups, cmap="tab10", s=18)
    for (x, y), label in zip(xy, labels):
        ax.annotate(label, (x, y), textcoords="offset points", xytext=(3, 3), fontsize=9)
    if title:
        ax.set_title(title)
    ax.grid(alpha=0.3)
    return ax


def project_2d(vectors) -> np.ndarray:
    """Project (n, d) vectors to (n, 2) with PCA (centred SVD), for scatter_embeddings."""
    x = _to_numpy(vectors).astype(np.float64)
    x = x - x.mean(axis=0, keepdims=True)
    _, _, vt = np.linalg.svd(x, full_matrices=False)
    return x @ vt[:2].T
