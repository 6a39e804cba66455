"""Repository-wide pytest hooks: here, not in tests/conftest.py, so that they also see the nbval
items collected from solutions/ (pyproject.toml's testpaths), even in `pytest solutions`."""

from __future__ import annotations

import pytest


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects
def pytest_collection_modifyitems(items):
    """Every cell nbval collects from a notebook runs that notebook: slow (`pytest -m "not slow"` skips them)."""
    for item in items:
        if item.path.suffix == ".ipynb":
            item.add_marker(pytest.mark.slow)
