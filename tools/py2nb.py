#!/usr/bin/env python3
"""Turn a percent-format notebook source (tools/nbsource/NN_topic.py) into the solution notebook.

Authoring in plain text keeps diffs readable; solutions/NN_topic/NN_topic.ipynb stays what
nbgrader reads. tests/test_release.py checks that the two agree.

Cell headers:
    # %% [markdown] slide            markdown, slide type "slide" (locked)
    # %% fragment                    code cell, slide type "fragment"
    # %% solution id=additive        student solution cell (nbgrader solution)
    # %% test id=test_additive points=3   graded, locked test cell
    # %% locked id=given_encoder     read-only code cell
Slide types: slide, subslide, fragment, skip, notes, - (default).

Usage: python tools/py2nb.py [--check] [SOURCE ...]   (default: every tools/nbsource/*.py)
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SLIDE_TYPES = {"slide", "subslide", "fragment", "skip", "notes", "-"}


def parse(text: str, assignment: str) -> dict:
    """Parse percent-format text into an nbformat 4.5 notebook dict."""
    cells: list[dict] = []
    header, body = None, []

    def flush() -> None:
        if header is None:
            return
        cells.append(make_cell(header, body, assignment, len(cells)))

    for line in text.splitlines():
        if line.startswith("# %%"):
            flush()
            header, body = line[4:].strip(), []
        elif header is not None:
            body.append(line)
    flush()
    return {
        "cells": cells,
        "metadata": {
            "celltoolbar": "Slideshow",
            "kernelspec": {"display_name": "Python 3 (course)", "language": "python", "name": "python3"},
            "language_info": {"name": "python", "pygments_lexer": "ipython3"},
        },
        "nbformat": 4,
        "nbformat_minor": 5,
    }


def make_cell(header: str, body: list[str], assignment: str, index: int) -> dict:
    """Build one cell from its header words and body lines."""
    words = header.split()
    markdown = "[markdown]" in words
    options = dict(w.split("=", 1) for w in words if "=" in w)
    flags = {w for w in words if "=" not in w and w != "[markdown]"}
    slide = next((w for w in flags if w in SLIDE_TYPES), "-")
    while body and not body[-1].strip():
        body.pop()
    while body and not body[0].strip():
        body.pop(0)
    if markdown:
        body = [line[2:] if line.startswith("# ") else line.lstrip("#") for line in body]
    source = "\n".join(body)
    cell_id = options.get("id", f"{assignment.split('_')[0]}-cell-{index:03d}")
    meta: dict = {"slideshow": {"slide_type": slide}}
    nbgrader = None
    if "solution" in flags:
        nbgrader = {"solution": True, "grade": False, "locked": False}
    elif "test" in flags:
        nbgrader = {"solution": False, "grade": True, "locked": True, "points": float(options["points"])}
    elif "locked" in flags or markdown:
        nbgrader = {"solution": False, "grade": False, "locked": True}
    if nbgrader is not None:
        nbgrader.update(grade_id=cell_id, schema_version=3)
        meta["nbgrader"] = nbgrader
    if "tags" in options:
        meta["tags"] = options["tags"].split(",")
    cell = {"cell_type": "markdown" if markdown else "code", "id": cell_id, "metadata": meta,
            "source": source}
    if not markdown:
        cell.update(execution_count=None, outputs=[])
    return cell


def dumps(nb: dict) -> str:
    """Serialise like nbformat does (indent 1, sorted keys, trailing newline)."""
    return json.dumps(nb, indent=1, sort_keys=True, ensure_ascii=False) + "\n"


def target_for(source: Path) -> Path:
    """Return solutions/NN_topic/NN_topic.ipynb for tools/nbsource/NN_topic.py."""
    return ROOT / "solutions" / source.stem / f"{source.stem}.ipynb"


def main(argv: list[str]) -> int:
    """Convert (or with --check compare) each source; return 1 when something is stale."""
    check = "--check" in argv
    sources = [Path(a) for a in argv if a != "--check"] or sorted((ROOT / "tools" / "nbsource").glob("*.py"))
    stale = []
    for source in sources:
        text = dumps(parse(source.read_text(encoding="utf-8"), source.stem))
        target = target_for(source)
        if target.exists() and target.read_text(encoding="utf-8") == text:
            continue
        stale.append(str(target.relative_to(ROOT)))
        if not check:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text, encoding="utf-8")
    for name in stale:
        print(("stale: " if check else "wrote: ") + name)
    return 1 if (check and stale) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
