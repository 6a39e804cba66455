"""Each solution notebook and its text twin, kept in step by jupytext (``course sync``).

``solutions/NN_topic/NN_topic.ipynb`` is what nbgrader reads and JupyterLab edits;
``nbsource/NN_topic/NN_topic.py`` is the same notebook in jupytext's percent format, for editors
and diffs. ``jupytext.toml`` at the repository root pairs them (``solutions///ipynb,
nbsource///py:percent``); the twin sits outside ``solutions/`` because nbgrader copies every file
there into the student release.

``course sync`` runs ``jupytext --sync`` on every pair that differs: the side edited last wins,
outputs and cell ids stay in the notebook. Before a file is rewritten its old content is copied
to ``build/sync-backup/``, so no edit is ever lost, even one made on the older side.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import nbformat

TEXT_FORMAT = "py:percent"
TWIN_ROOT = "nbsource"


@dataclass(frozen=True)
class Pair:
    assignment: str
    notebook: Path
    twin: Path

    @classmethod
    def of(cls, root: Path, assignment: str) -> Pair:
        return cls(assignment, root / "solutions" / assignment / f"{assignment}.ipynb",
                   root / TWIN_ROOT / assignment / f"{assignment}.py")


def _config(root: Path):
    from jupytext.config import load_jupytext_config

    config = load_jupytext_config(str(root / "solutions"))
    if config is None:
        raise FileNotFoundError(f"no jupytext.toml above {root / 'solutions'}: it pairs notebooks with nbsource/")
    return config


def expected_twin(root: Path, notebook: Path) -> str:
    """The text jupytext writes for ``notebook`` under the repository's pairing configuration."""
    import jupytext

    return jupytext.writes(nbformat.read(notebook, as_version=4), fmt=TEXT_FORMAT, config=_config(root))


def assignments(root: Path) -> list[str]:
    """Every assignment with a notebook or a text twin (a new one may exist on one side only)."""
    names = {p.parent.name for p in (root / "solutions").glob("[0-9][0-9]_*/*.ipynb") if p.stem == p.parent.name}
    names |= {p.parent.name for p in (root / TWIN_ROOT).glob("[0-9][0-9]_*/*.py") if p.stem == p.parent.name}
    return sorted(names)


def out_of_step(root: Path, wanted: list[str] | None = None) -> list[str]:
    """Describe each pair whose two sides differ (or where one side is missing)."""
    problems = []
    for name in wanted or assignments(root):
        pair = Pair.of(root, name)
        if not pair.notebook.exists() or not pair.twin.exists():
            missing = pair.notebook if not pair.notebook.exists() else pair.twin
            problems.append(f"{missing.relative_to(root)} is missing")
        elif pair.twin.read_text(encoding="utf-8") != expected_twin(root, pair.notebook):
            problems.append(f"{pair.notebook.relative_to(root)} and {pair.twin.relative_to(root)} differ")
    return problems


def _backup(root: Path, path: Path, stamp: str) -> Path | None:
    if not path.exists():
        return None
    copy = root / "build" / "sync-backup" / stamp / path.relative_to(root)
    copy.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(path, copy)
    return copy


RANDOM_ID = re.compile(r"[0-9a-f]{8}")


def _name_from_source(cell) -> str:
    """A name for an ungraded cell: what its code defines or assigns first, or its heading's words."""
    source = cell.source
    if cell.cell_type == "code":
        match = re.search(r"^(?:def|class)\s+(\w+)|^(\w+)\s*(?:,\s*\w+\s*)*=(?!=)", source, re.M)
        if match:
            return (match.group(1) or match.group(2)).lower()
        match = re.search(r"^(\w+)\(", source, re.M)
        return f"{match.group(1).lower()}_call" if match else "code"
    words = re.findall(r"[a-z0-9]+", source.lower())[:4]
    return "_".join(words) or "text"


def name_cells_after_grade_ids(nb: nbformat.NotebookNode) -> bool:
    """Cells that jupytext created (random 8-character ids) take a name: their nbgrader grade_id when it
    is free; a "try it" cell after a solution, ``try_<solution>``; another cell, what it defines or its
    heading's first words. Return whether any cell was renamed."""
    used = {cell.id for cell in nb.cells}
    changed = False
    last_solution = None
    for cell in nb.cells:
        meta = cell.metadata.get("nbgrader", {})
        if meta.get("grade"):
            last_solution = None
        if RANDOM_ID.fullmatch(cell.id):
            grade_id = meta.get("grade_id")
            if grade_id:
                wanted = grade_id
            elif cell.cell_type == "code" and last_solution:
                wanted = f"try_{last_solution}"
            else:
                wanted = _name_from_source(cell)
            name, n = wanted, 2
            while name in used:
                name, n = f"{wanted}_{n}", n + 1
            used.discard(cell.id)
            cell.id = name
            used.add(name)
            changed = True
        if cell.cell_type == "code" and meta.get("solution") and not meta.get("grade"):
            last_solution = cell.id
    return changed


def read_text_notebook(text: str) -> nbformat.NotebookNode:
    """A notebook from percent-format text (as ``course sync`` would create it, ids named after grade ids)."""
    import jupytext

    nb = jupytext.reads(text, fmt=TEXT_FORMAT)
    name_cells_after_grade_ids(nb)
    return nb


def _tidy(notebook: Path) -> None:
    """After jupytext wrote the notebook: new cells named after their grade ids, and no per-notebook
    jupytext metadata (the pairing and its filters live in jupytext.toml, for every notebook alike)."""
    nb = nbformat.read(notebook, as_version=4)
    named = name_cells_after_grade_ids(nb)
    if named or nb.metadata.pop("jupytext", None) is not None:
        nbformat.write(nb, notebook)


def sync(root: Path, wanted: list[str] | None = None, prefer: str | None = None) -> list[str]:
    """Bring every pair that differs into step; return one line per pair changed.

    ``prefer`` is None (the side modified last wins, as ``jupytext --sync`` decides), ``"notebook"``
    or ``"text"``. The side that is rewritten is first copied to ``build/sync-backup/<time>/``.
    """
    from jupytext.cli import jupytext as jupytext_cli

    stamp = time.strftime("%Y%m%d-%H%M%S")
    done = []
    for name in wanted or assignments(root):
        pair = Pair.of(root, name)
        if not pair.notebook.exists() and not pair.twin.exists():
            raise ValueError(f"no such assignment: neither {pair.notebook.relative_to(root)} nor "
                             f"{pair.twin.relative_to(root)} exists")
        if pair.notebook.exists() and pair.twin.exists() and \
                pair.twin.read_text(encoding="utf-8") == expected_twin(root, pair.notebook):
            continue
        source = _source_side(pair, prefer)
        target = pair.twin if source == pair.notebook else pair.notebook
        backup = _backup(root, target, stamp)
        now = time.time()
        os.utime(source, (now, now))           # jupytext --sync reads the most recently modified side
        pair.twin.parent.mkdir(parents=True, exist_ok=True)
        jupytext_cli(["--sync", "--quiet", str(source)])
        _tidy(pair.notebook)
        line = f"{target.relative_to(root)} <- {source.relative_to(root)}"
        done.append(line + (f" (previous copy: {backup.relative_to(root)})" if backup else ""))
    return done


def _source_side(pair: Pair, prefer: str | None) -> Path:
    if not pair.twin.exists():
        return pair.notebook
    if not pair.notebook.exists():
        return pair.twin
    if prefer == "notebook":
        return pair.notebook
    if prefer == "text":
        return pair.twin
    return pair.twin if pair.twin.stat().st_mtime > pair.notebook.stat().st_mtime else pair.notebook
