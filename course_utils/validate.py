"""``course validate``: run a notebook and report each graded test cell, pass or fail."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import nbformat


@dataclass
class CellResult:
    """One graded test cell after execution."""

    grade_id: str
    points: float
    passed: bool
    error: str = ""


def graded_cells(nb: nbformat.NotebookNode) -> list[nbformat.NotebookNode]:
    """Return the notebook's autograded test cells (nbgrader ``grade`` code cells)."""
    return [
        c for c in nb.cells
        if c.cell_type == "code" and c.get("metadata", {}).get("nbgrader", {}).get("grade")
    ]


def _error_line(cell: nbformat.NotebookNode) -> str:
    for output in cell.get("outputs", []):
        if output.get("output_type") == "error":
            return f"{output.get('ename', 'Error')}: {output.get('evalue', '')}".strip()[:300]
    return ""


def execute(nb: nbformat.NotebookNode, cwd: Path, timeout: int = 600, kernel_name: str = "python3") -> nbformat.NotebookNode:
    """Execute every cell, continuing past errors, in ``cwd``; return the executed notebook."""
    from nbclient import NotebookClient

    client = NotebookClient(
        nb, timeout=timeout, kernel_name=kernel_name, allow_errors=True,
        resources={"metadata": {"path": str(cwd)}},
    )
    client.execute()
    return nb


def results(nb: nbformat.NotebookNode) -> list[CellResult]:
    """Return pass/fail and points for every graded cell of an executed notebook."""
    out = []
    for cell in graded_cells(nb):
        meta = cell.metadata["nbgrader"]
        error = _error_line(cell)
        ran = cell.get("execution_count") is not None
        out.append(CellResult(
            grade_id=meta.get("grade_id", "?"), points=float(meta.get("points", 0)),
            passed=ran and not error, error=error if ran else "cell did not run",
        ))
    return out


def validate(path: Path, timeout: int = 600) -> list[CellResult]:
    """Run the notebook at ``path`` (not modified on disk) and return its graded results."""
    path = Path(path)
    nb = nbformat.read(path, as_version=4)
    return results(execute(nb, cwd=path.parent.resolve(), timeout=timeout))


def report(items: list[CellResult]) -> str:
    """Format results as a table a student reads at a glance."""
    if not items:
        return "no graded test cells found"
    width = max(len(r.grade_id) for r in items)
    lines = []
    for r in items:
        mark = "PASS" if r.passed else "FAIL"
        line = f"{mark}  {r.grade_id:<{width}}  {r.points if r.passed else 0:g}/{r.points:g}"
        lines.append(line + (f"   {r.error}" if not r.passed else ""))
    earned = sum(r.points for r in items if r.passed)
    total = sum(r.points for r in items)
    lines.append(f"score {earned:g}/{total:g} ({sum(r.passed for r in items)} of {len(items)} tests pass)")
    return "\n".join(lines)
