import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from course_utils.train import History, count_parameters, fit, format_count, move_to


def _regression_problem():
    torch.manual_seed(0)
    x = torch.randn(256, 3)
    y = x @ torch.tensor([1.0, -2.0, 0.5]) + 0.3
    batches = [(x[i:i + 32], y[i:i + 32]) for i in range(0, 256, 32)]
    return nn.Linear(3, 1), batches


def _loss(model, batch):
    x, y = batch
    return F.mse_loss(model(x).squeeze(-1), y)


def test_fit_learns_and_records_history():
    model, batches = _regression_problem()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.05)
    history = fit(model, _loss, batches, optimizer, steps=300, eval_fn=lambda m: {"mse": _loss(m, batches[0])},
                  eval_every=100, progress=False)
    assert history.steps == list(range(1, 301))
    assert history.losses[-1] < 0.01 < history.losses[0]
    assert [s for s, _ in history.evals] == [100, 200, 300]
    assert history.last("mse") < 0.01
    assert history.stopped_by == "steps" and history.seconds > 0
    assert model.training, "fit leaves the model in training mode"


def test_fit_time_budget_stops_early():
    model, batches = _regression_problem()
    history = fit(model, _loss, batches, torch.optim.SGD(model.parameters(), lr=0.01), steps=10**7,
                  time_budget_s=0.2, progress=False)
    assert history.stopped_by == "time budget" and len(history.steps) < 10**7


def test_fit_rejects_divergence_and_bad_steps():
    model, batches = _regression_problem()
    with pytest.raises(FloatingPointError, match="lower the learning rate"):
        fit(model, lambda m, b: torch.tensor(float("nan"), requires_grad=True), batches,
            torch.optim.SGD(model.parameters(), lr=0.1), steps=3, progress=False)
    with pytest.raises(ValueError):
        fit(model, _loss, batches, torch.optim.SGD(model.parameters(), lr=0.1), steps=0)


def test_history_last_missing_metric():
    with pytest.raises(KeyError, match="accuracy"):
        History().last("accuracy")


def test_move_to_nested():
    batch = {"a": torch.zeros(1), "b": [torch.ones(1), 3]}
    moved = move_to(batch, "cpu")
    assert moved["b"][1] == 3 and moved["a"].device.type == "cpu"


def test_count_parameters_and_format():
    model = nn.Linear(10, 5)
    assert count_parameters(model) == 55
    model.bias.requires_grad_(False)
    assert count_parameters(model) == 50 and count_parameters(model, trainable_only=False) == 55
    assert format_count(110_000_000) == "110.0M" and format_count(1234) == "1.2k" and format_count(12) == "12"
