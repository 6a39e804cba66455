"""Each solution notebook and its text twin stay in step, edited from either side, and nothing is lost."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from course_tools.pairing import Pair, out_of_step

ASSIGNMENT = "04_masking"


def _course_copy(root: Path, tmp: Path) -> Path:
    """A course root with one assignment: the same configuration files, solution, twin and release."""
    for name in ("jupytext.toml", "nbgrader_config.py"):
        shutil.copy(root / name, tmp / name)
    for folder in ("solutions", "nbsource", "notebooks"):
        shutil.copytree(root / folder / ASSIGNMENT, tmp / folder / ASSIGNMENT)
    return tmp


def _course(tmp: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "course_tools.cli", *args], cwd=tmp, capture_output=True,
                          text=True, timeout=600)


def _cell(nb, cell_id):
    return next(c for c in nb.cells if c.id == cell_id)


def test_every_pair_is_in_step_and_the_twins_live_outside_solutions(root):
    assert out_of_step(root) == [], "run `course sync`"
    for notebook in sorted((root / "solutions").glob("[0-9][0-9]_*/*.ipynb")):
        pair = Pair.of(root, notebook.parent.name)
        assert pair.twin.is_file(), f"{notebook.name} has no text twin in nbsource/"
        assert not list(notebook.parent.glob("*.py")), f"a .py beside {notebook.name} would be released to students"


def test_the_check_names_the_pair_and_the_command(root, tmp_path):
    course = _course_copy(root, tmp_path)
    twin = Pair.of(course, ASSIGNMENT).twin
    twin.write_text(twin.read_text().replace("# # 04 · Masking", "# # 04 · Masking, retitled"))
    result = _course(course, "sync", "--check")
    assert result.returncode == 1
    assert f"solutions/{ASSIGNMENT}/{ASSIGNMENT}.ipynb and nbsource/{ASSIGNMENT}/{ASSIGNMENT}.py differ" in result.stdout
    assert "course sync" in result.stdout and "build/sync-backup" in result.stdout


@pytest.mark.slow
def test_an_edit_in_jupyterlab_reaches_the_twin_and_the_release(root, tmp_path):
    course = _course_copy(root, tmp_path)
    pair = Pair.of(course, ASSIGNMENT)
    before = pair.notebook.read_text()
    nb = nbformat.read(pair.notebook, as_version=4)          # as JupyterLab reads and writes it
    _cell(nb, "intuition_rectangles_ragged_data").source += "\n\nA sentence the instructor added in JupyterLab."
    _cell(nb, "test_masks").metadata["nbgrader"]["points"] = 5.0       # Create assignment: points 3 -> 5
    nbformat.write(nb, pair.notebook)
    result = _course(course, "sync", ASSIGNMENT)
    assert result.returncode == 0, result.stderr
    text = pair.twin.read_text()
    assert "# A sentence the instructor added in JupyterLab." in text
    assert '"grade_id": "test_masks", "locked": true, "points": 5.0' in text
    released = nbformat.read(course / "notebooks" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb", as_version=4)
    assert "A sentence the instructor added in JupyterLab." in _cell(released, "intuition_rectangles_ragged_data").source
    assert _cell(released, "test_masks").metadata["nbgrader"]["points"] == 5.0
    assert nbformat.read(pair.notebook, as_version=4) == nb, "the notebook itself is kept as edited"
    backups = list((course / "build" / "sync-backup").rglob(f"{ASSIGNMENT}.py"))
    assert len(backups) == 1 and "A sentence the instructor added" not in backups[0].read_text(), \
        "the twin's previous text is kept"
    assert before != pair.notebook.read_text()


@pytest.mark.slow
def test_an_edit_in_the_text_twin_reaches_the_notebook_and_the_release(root, tmp_path):
    course = _course_copy(root, tmp_path)
    pair = Pair.of(course, ASSIGNMENT)
    ids = [c.id for c in nbformat.read(pair.notebook, as_version=4).cells]
    text = pair.twin.read_text()
    text = text.replace('"grade_id": "test_masks", "locked": true, "points": 3.0',
                        '"grade_id": "test_masks", "locked": true, "points": 4.0')
    text = text.replace("# ## 1 · Intuition: rectangles of ragged data\n",
                        "# ## 1 · Intuition: rectangles of ragged data\n#\n# Edited in a text editor.\n")
    assert text != pair.twin.read_text()
    pair.twin.write_text(text)
    result = _course(course, "sync", ASSIGNMENT)
    assert result.returncode == 0, result.stderr
    nb = nbformat.read(pair.notebook, as_version=4)
    assert [c.id for c in nb.cells] == ids, "cell ids are kept"
    assert "Edited in a text editor." in _cell(nb, "intuition_rectangles_ragged_data").source
    assert _cell(nb, "test_masks").metadata["nbgrader"]["points"] == 4.0
    released = nbformat.read(course / "notebooks" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb", as_version=4)
    assert "Edited in a text editor." in _cell(released, "intuition_rectangles_ragged_data").source
    assert _cell(released, "test_masks").metadata["nbgrader"]["points"] == 4.0
    assert pair.twin.read_text() == text, "the twin is kept as edited"
    assert "jupytext" not in nb.metadata, "the pairing lives in jupytext.toml, not in each notebook"


def test_a_cell_inserted_in_the_middle_renames_nothing(root, tmp_path):
    course = _course_copy(root, tmp_path)
    pair = Pair.of(course, ASSIGNMENT)
    before = nbformat.read(pair.notebook, as_version=4)
    text = pair.twin.read_text()
    marker = "# %% [markdown]"
    middle = [i for i in range(len(text)) if text.startswith(marker, i)][len(before.cells) // 4]
    pair.twin.write_text(text[:middle] + "# %% [markdown]\n# An inserted cell.\n\n" + text[middle:])
    from course_tools.pairing import sync

    assert sync(course, [ASSIGNMENT], prefer="text")
    after = nbformat.read(pair.notebook, as_version=4)
    assert len(after.cells) == len(before.cells) + 1
    new = [c for c in after.cells if c.id not in {b.id for b in before.cells}]
    assert len(new) == 1 and new[0].source == "An inserted cell."
    assert [c.id for c in after.cells if c is not new[0]] == [c.id for c in before.cells]


def test_jupyterlab_saves_the_twin_too(root, tmp_path):
    """What `make lab-instructor` does on save: jupytext's contents manager writes both files."""
    from jupytext import TextFileContentsManager

    course = _course_copy(root, tmp_path)
    pair = Pair.of(course, ASSIGNMENT)
    manager = TextFileContentsManager(root_dir=str(course))
    path = f"solutions/{ASSIGNMENT}/{ASSIGNMENT}.ipynb"
    model = manager.get(path)
    _cell(model["content"], "summary").source += "\n* Saved from JupyterLab."
    manager.save(model, path)
    assert "# * Saved from JupyterLab." in pair.twin.read_text()
    assert out_of_step(course) == []


def test_notebooks_are_written_as_nbformat_writes_them(root):
    for path in sorted([*root.glob("solutions/[0-9][0-9]_*/*.ipynb"), *root.glob("notebooks/[0-9][0-9]_*/*.ipynb")]):
        raw = path.read_text(encoding="utf-8")
        nb = nbformat.read(path, as_version=4)
        nbformat.validate(nb)
        rewritten = nbformat.writes(nb)
        assert raw in (rewritten, rewritten + "\n"), f"{path.relative_to(root)} is not in nbformat's canonical form"


def test_cell_ids_name_what_a_cell_is(root):
    import re

    for path in sorted(root.glob("solutions/[0-9][0-9]_*/*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        ids = [c.id for c in nb.cells]
        assert len(set(ids)) == len(ids)
        positional = [i for i in ids if re.fullmatch(r"\d\d-cell-\d+|[0-9a-f]{8}", i)]
        assert not positional, f"{path.name}: positional or random ids {positional}"
        for cell in nb.cells:
            grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
            assert grade_id in (None, cell.id), f"{path.name}: cell {cell.id} has grade_id {grade_id}"


def test_notebooks_hold_only_what_students_get(root):
    from course_tools.i18n import LANGUAGES

    markers = ("BEGIN SOLUTION", "END SOLUTION", "BEGIN HIDDEN TESTS", "END HIDDEN TESTS")
    # notebooks/<id>/, and each edition's notebooks/<lang>/<id>/ (the same release, translated)
    folders = [f for f in sorted((root / "notebooks").iterdir()) if f.is_dir() and f.name not in LANGUAGES]
    folders += [f for lang in LANGUAGES if (root / "notebooks" / lang).is_dir()
                for f in sorted((root / "notebooks" / lang).iterdir()) if f.is_dir()]
    assert folders
    for folder in folders:
        solution_dir = root / "solutions" / folder.name
        allowed = {p.relative_to(solution_dir) for p in solution_dir.rglob("*") if p.is_file()}
        for path in folder.rglob("*"):
            if not path.is_file() or {".ipynb_checkpoints", "__pycache__"} & set(path.parts):
                continue
            relative = path.relative_to(folder)
            assert relative in allowed, f"notebooks/{folder.name}/{relative} is not part of the release"
            assert path.suffix != ".py" or (solution_dir / relative).is_file(), f"a text twin in notebooks/: {relative}"
            data = path.read_bytes().decode("utf-8", errors="replace")
            for marker in markers:
                assert marker not in data, f"notebooks/{folder.name}/{relative} contains {marker!r}"
            if path.suffix == ".ipynb":
                cells = nbformat.read(path, as_version=4).cells
                notes = [c.id for c in cells if c.metadata.get("slideshow", {}).get("slide_type") == "notes"]
                assert not notes, f"notebooks/{folder.name}/{relative} holds the lecturer's speaker notes: {notes}"
                solution = nbformat.read(solution_dir / relative, as_version=4).cells
                kept = [c.id for c in solution if c.metadata.get("slideshow", {}).get("slide_type") != "notes"]
                assert [c.id for c in cells] == kept, f"notebooks/{folder.name}/{relative}: cells differ from the solution's"


def test_new_cells_get_names_not_random_ids():
    """A cell jupytext creates: its grade id, try_<solution> right after a solution, else what it defines."""
    from course_tools.pairing import name_cells_after_grade_ids

    solution = nbformat.v4.new_code_cell("def f(x):\n    return x")
    solution.metadata["nbgrader"] = {"solution": True, "grade": False, "grade_id": "f"}
    try_it = nbformat.v4.new_code_cell("print(f(2))")
    test = nbformat.v4.new_code_cell("assert f(1) == 1")
    test.metadata["nbgrader"] = {"solution": False, "grade": True, "grade_id": "test_f", "points": 1}
    later = nbformat.v4.new_code_cell("losses = [f(i) for i in range(3)]")
    again = nbformat.v4.new_code_cell("losses = []")
    nb = nbformat.v4.new_notebook(cells=[solution, try_it, test, later, again])
    for cell, random_id in zip(nb.cells, ("0a1b2c3d", "1a1b2c3d", "2a1b2c3d", "3a1b2c3d", "4a1b2c3d")):
        cell.id = random_id
    assert name_cells_after_grade_ids(nb)
    assert [c.id for c in nb.cells] == ["f", "try_f", "test_f", "losses", "losses_2"]
    assert not name_cells_after_grade_ids(nb), "named cells keep their names"


def test_a_release_saved_by_jupyterlab_without_an_edit_is_unchanged(root):
    """JupyterLab's browser keeps one number type (2.0 arrives as 2) and its server writes with nbformat:
    a student notebook that round trip leaves byte for byte as released."""
    def as_javascript(value):
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, dict):
            return {k: as_javascript(v) for k, v in value.items()}
        if isinstance(value, list):
            return [as_javascript(v) for v in value]
        return value

    for path in sorted(root.glob("notebooks/[0-9][0-9]_*/*.ipynb")):
        raw = path.read_text(encoding="utf-8")
        saved = nbformat.writes(nbformat.from_dict(as_javascript(json.loads(raw)))) + "\n"
        assert saved == raw, f"{path.relative_to(root)} changes when JupyterLab saves it unedited (points 2.0 -> 2?)"
