"""``course slides``: a notebook as a reveal.js lecture that works offline.

The lecture is the solution notebook itself: cells marked ``slide``/``subslide``/``fragment``
become slides, ``notes`` cells become speaker notes (press ``s`` in the browser) and
``skip`` cells are left out. The notebook is executed first (in a scratch copy of its
folder), so the slides carry the figures that the code draws. Hidden tests are removed.

Nothing is fetched from the network when the slides are shown: reveal.js (from the
``sphinx-revealjs`` wheel) and MathJax 2 (from the ``jupyter-server-mathjax`` wheel) are
copied next to the HTML files, in ``_reveal/`` and ``_mathjax/``. Copy the whole output
folder to present from another machine.
"""

from __future__ import annotations

import html
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import nbformat

REVEAL_DIR = "_reveal"
MATHJAX_DIR = "_mathjax"
MATHJAX_CONFIG = "TeX-AMS-MML_HTMLorMML-full,Safe"
TEMPLATE = "course_reveal"
# reveal.js themes that import fonts from Google (simple, night, ...) would need the network.
THEME = "white"
SOLUTION_MARKERS = ("### BEGIN SOLUTION", "### END SOLUTION")
SLIDE_STARTS = ("slide", "subslide")


@dataclass
class Deck:
    """One written slide deck."""

    assignment: str
    path: Path
    slides: int
    figures: int
    notes: int
    executed: bool
    seconds: float


def reveal_source() -> Path:
    """Return the folder of the reveal.js distribution shipped in the sphinx-revealjs wheel."""
    import sphinx_revealjs

    folder = Path(sphinx_revealjs.__file__).parent / "_static" / "revealjs"
    if not (folder / "dist" / "reveal.js").is_file():
        raise FileNotFoundError(f"reveal.js not found under {folder}: reinstall sphinx-revealjs")
    return folder


def mathjax_source() -> Path:
    """Return the folder of MathJax 2 shipped in the jupyter-server-mathjax wheel."""
    import jupyter_server_mathjax

    folder = Path(jupyter_server_mathjax.__file__).parent / "static"
    if not (folder / "MathJax.js").is_file():
        raise FileNotFoundError(f"MathJax not found under {folder}: reinstall jupyter-server-mathjax")
    return folder


def copy_assets(out: Path) -> None:
    """Put reveal.js (dist + notes plugin) and MathJax beside the slides in ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    reveal = reveal_source()
    for part in ("dist", "plugin/notes", "LICENSE"):
        src = reveal / part
        if not src.exists():
            continue
        dest = out / REVEAL_DIR / part
        if src.is_dir():
            shutil.copytree(src, dest, dirs_exist_ok=True)
        else:
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest)
    if not (out / MATHJAX_DIR / "MathJax.js").is_file():
        shutil.copytree(mathjax_source(), out / MATHJAX_DIR, dirs_exist_ok=True)


def strip_hidden_tests(nb: nbformat.NotebookNode) -> int:
    """Remove every hidden-test region (nbgrader's own ``ClearHiddenTests``) and the solution markers, in place.

    Returns how many hidden-test regions went. The solution code itself stays: it is the lecture.
    """
    from nbgrader.preprocessors import ClearHiddenTests

    clear = ClearHiddenTests()
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    removed = sum(clear.begin_test_delimeter in line for cell in code for line in cell.source.splitlines())
    for cell in code:
        clear._remove_hidden_test_region(cell)
    for cell in nb.cells:
        if cell.cell_type == "code" and "###" in cell.source:
            kept = [line for line in cell.source.splitlines() if line.strip() not in SOLUTION_MARKERS]
            cell.source = "\n".join(kept).rstrip()
    return removed


def tests_on_their_own_slides(nb: nbformat.NotebookNode) -> int:
    """In the lecture, a graded test that follows its exercise on the same slide starts a sub-slide of
    its own (below the exercise): prompt, solution and try-it together, then the test, so that each
    fits the screen. Returns how many moved."""
    moved = 0
    for cell in nb.cells:
        if cell.get("metadata", {}).get("nbgrader", {}).get("grade") and slide_type(cell) in ("-", "fragment"):
            cell.metadata.setdefault("slideshow", {})["slide_type"] = "subslide"
            moved += 1
    return moved


def hints_to_notes(nb: nbformat.NotebookNode) -> int:
    """In the lecture the prompts' collapsed hints become speaker notes (one notes cell after the prompt),
    for the lecturer to give when the room is stuck. Returns how many hints moved."""
    from course_tools.feedback import split_hints

    cells, moved = [], 0
    for cell in nb.cells:
        cells.append(cell)
        if cell.cell_type == "markdown":
            prompt, hints = split_hints(cell.source)
            if hints:
                cell.source = prompt
                label = "提示" if nb.metadata.get("language") == "zh_CN" else "Hint"
                notes = nbformat.v4.new_markdown_cell("\n\n".join(f"**{label} {i}.** {h}" for i, h in enumerate(hints, 1)))
                notes.metadata["slideshow"] = {"slide_type": "notes"}
                notes.id = f"{cell.id}-hints"
                cells.append(notes)
                moved += len(hints)
    nb.cells = cells
    return moved


def slide_type(cell: nbformat.NotebookNode) -> str:
    """Return the cell's ``slideshow.slide_type`` ('-' when absent)."""
    return cell.get("metadata", {}).get("slideshow", {}).get("slide_type", "-") or "-"


def expected_slides(nb: nbformat.NotebookNode) -> int:
    """Number of slides reveal.js will count (``Reveal.getTotalSlides()``) for this notebook.

    Each ``slide`` or ``subslide`` cell starts one; ``skip`` cells are dropped and ``notes``
    cells never start one. The first shown cell always opens a slide.
    """
    shown = [c for c in nb.cells if slide_type(c) != "skip"]
    count = sum(slide_type(c) in SLIDE_STARTS for c in shown)
    if shown and slide_type(shown[0]) not in SLIDE_STARTS:
        count += 1
    return count


def count_figures(nb: nbformat.NotebookNode) -> int:
    """Number of image outputs in an executed notebook."""
    return sum(
        any(key.startswith("image/") for key in out.get("data", {}))
        for c in nb.cells if c.cell_type == "code" for out in c.get("outputs", [])
    )


def execute(nb: nbformat.NotebookNode, folder: Path, timeout: int = 900, progress: bool = True,
            label: str = "") -> nbformat.NotebookNode:
    """Run every cell in a scratch copy of ``folder`` with inline figures; stop at the first error."""
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    code_cells = sum(c.cell_type == "code" for c in nb.cells)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=code_cells, desc=f"running {label}".strip(), unit="cell", leave=False)
    saved = os.environ.get("MPLBACKEND")
    # The kernel inherits the environment: a headless backend (Agg, as in the tests) would draw no figures.
    os.environ["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"
    try:
        with tempfile.TemporaryDirectory(prefix="course-slides-") as scratch:
            work = Path(scratch) / folder.name
            shutil.copytree(folder, work, ignore=shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__"))
            client = NotebookClient(
                nb, timeout=timeout, kernel_name="python3", allow_errors=False,
                resources={"metadata": {"path": str(work)}},
                on_cell_executed=(lambda **_: bar.update(1)) if bar is not None else None,
            )
            try:
                client.execute()
            except CellExecutionError as error:
                import re

                trace = re.sub(r"\x1b\[[0-9;]*m", "", str(error)).strip().splitlines()
                raise RuntimeError(
                    f"{label or folder.name}: a cell failed while making the slides: "
                    f"{error.ename}: {error.evalue}\n" + "\n".join(trace[-12:])
                ) from None
    finally:
        if saved is None:
            os.environ.pop("MPLBACKEND", None)
        else:
            os.environ["MPLBACKEND"] = saved
        if bar is not None:
            bar.close()
    return nb


def export(nb: nbformat.NotebookNode, title: str) -> str:
    """Return the reveal.js HTML of ``nb`` using the offline course template."""
    from nbconvert import SlidesExporter
    from traitlets.config import Config

    config = Config()
    config.SlidesExporter.template_name = TEMPLATE
    config.SlidesExporter.extra_template_basedirs = [str(Path(__file__).parent / "templates")]
    config.SlidesExporter.reveal_url_prefix = REVEAL_DIR
    config.SlidesExporter.reveal_theme = THEME
    config.SlidesExporter.reveal_transition = "none"
    config.SlidesExporter.reveal_number = "c/t"
    config.SlidesExporter.reveal_width = "1100"
    config.SlidesExporter.reveal_height = "760"
    config.SlidesExporter.mathjax_url = f"{MATHJAX_DIR}/MathJax.js?config={MATHJAX_CONFIG}"
    body, _ = SlidesExporter(config=config).from_notebook_node(nb, resources={"metadata": {"name": title}})
    return body


def notebook_title(nb: nbformat.NotebookNode, default: str) -> str:
    """The text of the notebook's first ``#`` heading, else ``default``."""
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            for line in cell.source.splitlines():
                if line.startswith("# "):
                    return line[2:].strip()
    return default


def build_deck(root: Path, assignment: str, out: Path, execute_cells: bool = True,
               timeout: int = 900, progress: bool = True, lang: str | None = None) -> Deck:
    """Write ``out/<assignment>.slides.html`` from ``solutions/<assignment>/<assignment>.ipynb``; with
    ``lang`` (zh_CN) its markdown comes from the notebook's catalogue (cells not translated stay English)."""
    import time

    source = root / "solutions" / assignment / f"{assignment}.ipynb"
    if not source.is_file():
        from course_tools.build import list_assignments

        known = ", ".join(list_assignments(root)) or "none"
        raise FileNotFoundError(f"no solution notebook {source.relative_to(root)} (assignments: {known})")
    start = time.perf_counter()
    nb = nbformat.read(source, as_version=4)
    if lang:
        from course_tools.i18n import load_catalogue, translate_notebook

        nb = translate_notebook(nb, load_catalogue(root, assignment, lang), lang)[0]
    strip_hidden_tests(nb)
    tests_on_their_own_slides(nb)
    hints_to_notes(nb)
    if execute_cells:
        execute(nb, source.parent, timeout=timeout, progress=progress, label=assignment)
    copy_assets(out)
    path = out / f"{assignment}.slides.html"
    page = export(nb, notebook_title(nb, assignment))
    if lang:
        tag = re.search(r"<html\b[^>]*>", page)
        if tag:
            bare = re.sub(r'\s+lang="[^"]*"', "", tag.group(0))
            page = page.replace(tag.group(0), bare.replace("<html", f'<html lang="{lang.replace("_", "-")}"', 1), 1)
    path.write_text(page, encoding="utf-8")
    notes = sum(slide_type(c) == "notes" for c in nb.cells)
    return Deck(assignment, path, expected_slides(nb), count_figures(nb), notes, execute_cells,
                time.perf_counter() - start)


def write_index(out: Path) -> Path:
    """Write ``out/index.html``, one link per ``*.slides.html`` in ``out``, for the lecturer's browser."""
    import re

    rows = []
    for deck in sorted(out.glob("*.slides.html")):
        found = re.search(r"<title>(.*?)</title>", deck.read_text(encoding="utf-8"), re.S)
        title = found.group(1).strip() if found else deck.stem
        rows.append(f'<li><a href="{html.escape(deck.name)}">{title}</a></li>')
    index = out / "index.html"
    index.write_text(
        "<!doctype html>\n<html><head><meta charset='utf-8'><title>Course slides</title></head>\n"
        "<body style='font-family: sans-serif; max-width: 50em; margin: 2em auto'>\n"
        "<h1>Course slides</h1>\n<p>Open a deck. In a deck press <kbd>s</kbd> for the speaker view with "
        "notes, <kbd>f</kbd> for full screen, <kbd>Esc</kbd> for the overview.</p>\n"
        "<ol>\n" + "\n".join(rows) + "\n</ol>\n</body></html>\n",
        encoding="utf-8",
    )
    return index
