"""Device selection, seeding and a description of the environment."""

from __future__ import annotations

import os
import platform
import random

import numpy as np
import torch

DEVICE_VARIABLE = "COURSE_DEVICE"


def get_device() -> torch.device:
    """Return CUDA when present, else CPU; ``COURSE_DEVICE=cpu|cuda`` overrides."""
    wanted = os.environ.get(DEVICE_VARIABLE, "").strip().lower()
    if wanted in ("", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if wanted == "cpu":
        return torch.device("cpu")
    if wanted.startswith("cuda"):
        if not torch.cuda.is_available():
            raise RuntimeError(
                f"{DEVICE_VARIABLE}={wanted!r} asks for CUDA, but torch {torch.__version__} "
                "sees no CUDA device. Unset the variable or set it to 'cpu'."
            )
        return torch.device(wanted)
    raise ValueError(f"{DEVICE_VARIABLE} must be 'cpu', 'cuda' or 'cuda:N'; got {wanted!r}")


def seed_everything(seed: int = 0) -> None:
    """Seed Python, NumPy and torch (all devices) so that runs repeat."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device


def describe_environment(device: torch.device | None = None) -> str:
    """Return one line per fact: Python, torch, device, threads."""
    device = device or get_device()
    lines = [
        f"python  {platform.python_version()} ({platform.machine()})",
        f"torch   {torch.__version__}",
        f"numpy   {np.__version__}",
        f"device  {device}"
        + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else ""),
        f"threads {torch.get_num_threads()} of {os.cpu_count()} cores",
    ]
    return "\n".join(lines)
