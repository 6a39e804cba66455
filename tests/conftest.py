"""Shared fixtures. Each solution notebook runs once, in tests/test_mutants.py (whole notebook, then its
listed mistakes); `pytest solutions` runs them under nbval instead (`make test-gpu`)."""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib
import pytest

matplotlib.use("Agg")
os.environ.setdefault("MPLBACKEND", "Agg")

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def root() -> Path:
    """The repository root."""
    return ROOT


@pytest.fixture(scope="session")
def build_check(root):
    """`course build --check` run once for the whole session (an nbgrader process per assignment), from
    notebooks/ (the command finds the repository from a subfolder): (exit status, stdout, stderr)."""
    import contextlib
    import io

    from course_tools.cli import main

    out, err, here = io.StringIO(), io.StringIO(), os.getcwd()
    os.chdir(root / "notebooks")
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            status = main(["build", "--check"])
    finally:
        os.chdir(here)
    return status, out.getvalue(), err.getvalue()


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    import matplotlib.pyplot as plt

    plt.close("all")


# Screenshots that browser tests take, listed at the end of the run (tests/test_browser.py).
SCREENSHOTS: list[tuple[str, str]] = []


@pytest.fixture
def screenshot(root, request):
    """Save a browser screenshot to build/screenshots/<test>-<name>.png and list it in the summary."""

    def save(driver, name: str) -> Path:
        folder = root / "build" / "screenshots"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{request.node.name}-{name}.png"
        assert driver.save_screenshot(str(path)), f"chromium could not write {path}"
        assert path.stat().st_size > 5_000, f"{path} is suspiciously small ({path.stat().st_size} bytes)"
        SCREENSHOTS.append((request.node.nodeid, str(path)))
        print(f"screenshot: {path}")
        return path

    return save


def pytest_terminal_summary(terminalreporter):
    # tests/test_mutants.py records each solution notebook's run as a user property
    runs = sorted(value for reports in terminalreporter.stats.values() for report in reports
                  if getattr(report, "when", None) == "call"
                  for name, value in getattr(report, "user_properties", ()) if name == "notebook_run")
    if runs:
        terminalreporter.section("solution notebooks: the top-to-bottom run, then the listed mistakes")
        for assignment, first, mistakes, total in runs:
            terminalreporter.write_line(f"{assignment:<28} run {first:5.0f} s   {mistakes:3d} mistakes {total - first:5.0f} s")
    if SCREENSHOTS:
        terminalreporter.section("browser screenshots")
        for test, path in SCREENSHOTS:
            terminalreporter.write_line(f"{path}  ({test})")
