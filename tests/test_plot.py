import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch

from course_utils import plot
from course_utils.train import History


def test_show_attention_labels_axes():
    ax = plot.show_attention(torch.softmax(torch.randn(2, 3), -1), ["a", "b"], ["x", "y", "z"], title="t")
    assert [t.get_text() for t in ax.get_xticklabels()] == ["x", "y", "z"]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["a", "b"]
    assert ax.get_title() == "t"


def test_show_attention_rejects_wrong_rank():
    with pytest.raises(ValueError, match="queries, keys"):
        plot.show_attention(torch.zeros(2, 2, 2))


def test_show_attention_grid_one_panel_per_head():
    fig = plot.show_attention_grid(torch.rand(5, 3, 4), columns=2)
    titled = [ax for ax in fig.axes if ax.get_title().startswith("head")]
    assert len(titled) == 5


def test_plot_curves_and_smoothing():
    ax = plot.plot_curves({"train": [3, 2, 1, 1], "valid": [3, 3, 2, 2]}, smooth=2)
    assert [line.get_label() for line in ax.get_lines()] == ["train", "valid"]
    assert len(ax.get_lines()[0].get_ydata()) == 3


def test_plot_history_with_evaluations():
    history = History(steps=[1, 2, 3], losses=[3.0, 2.0, 1.0], evals=[(3, {"accuracy": 0.5})])
    ax = plot.plot_history(history)
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["train loss", "accuracy"]


def test_show_positional_encoding():
    ax = plot.show_positional_encoding(torch.randn(10, 8).clamp(-1, 1))
    assert ax.get_xlabel() == "dimension" and ax.get_ylabel() == "position"
    with pytest.raises(ValueError):
        plot.show_positional_encoding(torch.zeros(3))


def test_scatter_embeddings_and_projection():
    points = plot.project_2d(np.random.default_rng(0).normal(size=(6, 5)))
    assert points.shape == (6, 2)
    assert np.allclose(points.mean(0), 0, atol=1e-9)
    ax = plot.scatter_embeddings(points, list("abcdef"), title="words")
    assert [t.get_text() for t in ax.texts] == list("abcdef")
    with pytest.raises(ValueError):
        plot.scatter_embeddings(points, ["a"])
    plt.close("all")
