"""``course build``: regenerate notebooks/ (student release) from solutions/ with nbgrader."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import nbformat

ASSIGNMENT_PATTERN = "[0-9][0-9]_*"


def repo_root(start: Path | None = None) -> Path:
    """Return the course repository root: the nearest folder above with nbgrader_config.py and solutions/."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "nbgrader_config.py").is_file() and (folder / "solutions").is_dir():
            return folder
    raise FileNotFoundError(
        f"no course repository above {here}: expected a folder holding nbgrader_config.py and solutions/"
    )


def list_assignments(root: Path) -> list[str]:
    """Return the assignment ids under solutions/, in course order."""
    return sorted(
        p.name for p in (root / "solutions").glob(ASSIGNMENT_PATTERN)
        if p.is_dir() and (p / f"{p.name}.ipynb").is_file()
    )


def with_scripts_on_path(env: dict) -> dict:
    """``env`` with this environment's scripts first on PATH.

    nbgrader runs `alembic` from PATH: make it findable even when the virtual environment is
    not activated (for `course build`, `course grade` and JupyterLab's nbgrader extensions).
    """
    env = dict(env)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return env


def nbgrader(args: list[str], cwd: Path, timeout: float | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run one nbgrader sub-command in ``cwd`` (where it reads nbgrader_config.py)."""
    env = with_scripts_on_path(env if env is not None else os.environ)
    return subprocess.run(
        [sys.executable, "-m", "nbgrader", *args],
        cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env,
    )


def normalise_notebook(path: Path) -> None:
    """Strip what makes a release differ between machines (versions, execution and pairing metadata),
    and write it exactly as nbformat (and so JupyterLab) writes it."""
    nb = nbformat.read(path, as_version=4)
    nb.metadata.get("language_info", {}).pop("version", None)
    nb.metadata.pop("jupytext", None)    # students' notebooks are not paired with anything
    for cell in nb.cells:
        for key in ("execution", "ExecuteTime", "collapsed", "scrolled"):
            cell.metadata.pop(key, None)
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
    nbformat.write(nb, path)


def generate_release(root: Path, assignment: str, dest: Path) -> Path:
    """Generate one assignment's student release into ``dest/assignment`` and return that folder."""
    with tempfile.TemporaryDirectory(prefix="course-build-") as tmp:
        work = Path(tmp)
        shutil.copytree(root / "solutions" / assignment, work / "solutions" / assignment,
                        ignore=shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__"))
        shutil.copy(root / "nbgrader_config.py", work / "nbgrader_config.py")
        result = nbgrader(["generate_assignment", assignment, "--no-db", "--force"], cwd=work)
        released = work / "notebooks" / assignment
        if result.returncode != 0 or not released.is_dir():
            raise RuntimeError(f"nbgrader generate_assignment {assignment} failed:\n{result.stdout}\n{result.stderr}")
        for notebook in released.glob("*.ipynb"):
            normalise_notebook(notebook)
        target = dest / assignment
        if target.exists():
            shutil.rmtree(target)
        shutil.copytree(released, target)
    return target


# JupyterLab's and Python's own state, ignored by git and by nbgrader: not part of a release.
IGNORED_PARTS = {".ipynb_checkpoints", "__pycache__"}


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and not IGNORED_PARTS & set(p.relative_to(folder).parts)}


def _build_editions(root: Path, assignment: str, release: Path, check: bool) -> list[str]:
    """notebooks/<lang>/<assignment>/<assignment>.ipynb for each language with a catalogue: the release
    with its markdown translated (``course_tools.i18n.edition``); the same code cells, ids and points."""
    from course_tools.i18n import LANGUAGES, catalogue_path, edition, edition_path

    changed = []
    english = nbformat.read(release / f"{assignment}.ipynb", as_version=4)
    for lang in LANGUAGES:
        if not catalogue_path(root, assignment, lang).is_file():
            continue
        path = edition_path(root, assignment, lang)
        fresh = nbformat.writes(edition(root, english, assignment, lang)) + "\n"
        if not path.is_file() or path.read_text(encoding="utf-8") != fresh:
            changed.append(str(path.relative_to(root)))
            if not check:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(fresh, encoding="utf-8")
    return changed


def build(root: Path, assignments: list[str] | None = None, check: bool = False) -> list[str]:
    """Regenerate notebooks/ (or with ``check`` only compare); return the stale or written paths."""
    known = list_assignments(root)
    wanted = assignments or known
    unknown = sorted(set(wanted) - set(known))
    if unknown:
        raise ValueError(f"no such assignment in solutions/: {', '.join(unknown)}; have {known}")
    changed: list[str] = []
    from tqdm.auto import tqdm

    # a bar on a terminal (nbgrader takes a few seconds per assignment); nothing when stderr is not one
    bar = tqdm(wanted, desc="checking releases" if check else "building releases", unit="notebook",
               disable=None, file=sys.stderr, leave=False)
    with tempfile.TemporaryDirectory(prefix="course-release-") as tmp:
        for assignment in bar:
            bar.set_postfix_str(assignment)
            fresh = _files(generate_release(root, assignment, Path(tmp)))
            current_dir = root / "notebooks" / assignment
            current = _files(current_dir) if current_dir.is_dir() else {}
            changed += [f"notebooks/{assignment}/{name}" for name in sorted(set(fresh) | set(current))
                        if fresh.get(name) != current.get(name)]
            if not check and fresh != current:
                if current_dir.exists():
                    shutil.rmtree(current_dir)
                shutil.copytree(Path(tmp) / assignment, current_dir)
            changed += _build_editions(root, assignment, Path(tmp) / assignment, check)
    if assignments is None:  # a release whose solution is gone is stale too
        for orphan in sorted((root / "notebooks").glob(ASSIGNMENT_PATTERN)):
            if orphan.is_dir() and orphan.name not in known:
                changed.append(f"notebooks/{orphan.name}/ (no solutions/{orphan.name})")
                if not check:
                    shutil.rmtree(orphan)
    return changed
