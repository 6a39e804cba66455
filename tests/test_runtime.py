import random

import numpy as np
import pytest
import torch

from course_utils.runtime import describe_environment, get_device, seed_everything


def test_get_device_default_follows_cuda(monkeypatch):
    monkeypatch.delenv("COURSE_DEVICE", raising=False)
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert get_device().type == expected


def test_get_device_cpu_override(monkeypatch):
    monkeypatch.setenv("COURSE_DEVICE", "CPU")
    assert get_device() == torch.device("cpu")


def test_get_device_cuda_request(monkeypatch):
    monkeypatch.setenv("COURSE_DEVICE", "cuda")
    if torch.cuda.is_available():
        assert get_device().type == "cuda"
    else:
        with pytest.raises(RuntimeError, match="sees no CUDA device"):
            get_device()


def test_get_device_rejects_nonsense(monkeypatch):
    monkeypatch.setenv("COURSE_DEVICE", "tpu")
    with pytest.raises(ValueError, match="must be 'cpu', 'cuda'"):
        get_device()


def test_seed_everything_repeats_all_generators():
    seed_everything(7)
    first = (random.random(), np.random.rand(), torch.rand(3))
    seed_everything(7)
    second = (random.random(), np.random.rand(), torch.rand(3))
    assert first[0] == second[0] and first[1] == second[1]
    assert torch.equal(first[2], second[2])
    seed_everything(8)
    assert random.random() != first[0]


def test_describe_environment_names_versions():
    text = describe_environment(torch.device("cpu"))
    assert torch.__version__ in text
    assert "device  cpu" in text
    assert "threads" in text
