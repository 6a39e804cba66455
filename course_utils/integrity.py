"""What a submission may change, and what it may not.

``load_submission`` turns whatever a student handed in into a notebook or a one-line reason;
``reconstruct`` rebuilds it from the release so that only the student's answer cells (and
cells the student added) come from the submission: test cells, instructions and metadata
come from the instructor, deleted cells come back, duplicates are dropped.
``scan`` flags code for manual review: monkeypatching, file access outside the scratch
folder, subprocesses and sockets, and process exits.
"""

from __future__ import annotations

import ast
import copy
import json
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

WATCHED_MODULES = {"torch", "nn", "F", "np", "numpy", "math", "builtins", "sys", "os", "course_utils",
                   "random", "functools", "importlib", "plt", "matplotlib", "mock", "unittest"}
EXIT_CALLS = {"os._exit", "sys.exit", "exit", "quit", "os.kill", "os.abort", "os.killpg", "signal.signal",
              "signal.alarm", "ctypes.CDLL", "faulthandler._sigsegv"}
PROCESS_CALLS = {"os.system", "os.popen", "os.execv", "os.execve", "os.fork", "subprocess.run",
                 "subprocess.Popen", "subprocess.call", "subprocess.check_call", "subprocess.check_output",
                 "socket.socket", "socket.create_connection"}
FILE_CALLS = {"open", "Path", "pathlib.Path", "os.remove", "os.unlink", "os.rmdir", "os.rename",
              "os.replace", "os.chmod", "os.listdir", "os.walk", "os.scandir", "shutil.rmtree",
              "shutil.move", "shutil.copy", "shutil.copytree", "glob.glob", "sqlite3.connect", "io.open"}


class BadSubmission(Exception):
    """A file that cannot be graded as this assignment; the message is the one-line reason."""


def load_submission(path: Path | None) -> nbformat.NotebookNode:
    """Read a submitted notebook (upgrading old nbformat versions) or raise BadSubmission."""
    if path is None or not path.exists():
        raise BadSubmission("no notebook submitted")
    raw = path.read_bytes()
    if not raw.strip():
        raise BadSubmission("the notebook file is empty")
    try:
        data = json.loads(raw.decode("utf-8", errors="replace"))
    except json.JSONDecodeError as error:
        raise BadSubmission(f"not a valid notebook: invalid JSON ({error.msg} at line {error.lineno})") from None
    if not isinstance(data, dict) or "cells" not in data and "worksheets" not in data:
        raise BadSubmission("not a notebook: no cells")
    if data.get("cells") == []:
        raise BadSubmission("the notebook has no cells")
    major = data.get("nbformat")
    if major not in (3, 4):
        raise BadSubmission(f"unsupported notebook format version {major!r} (expected 4)")
    try:
        nb = nbformat.reads(json.dumps(data), as_version=4)
    except Exception as error:  # nbformat raises a variety of errors for broken structure
        raise BadSubmission(f"not a valid notebook: {type(error).__name__}") from None
    if not nb.cells:
        raise BadSubmission("the notebook has no cells")
    return nb


def _key(cell: dict) -> str | None:
    return cell.get("metadata", {}).get("nbgrader", {}).get("grade_id") or cell.get("id")


def _text(cell: dict) -> str:
    source = cell.get("source", "")
    return "".join(source) if isinstance(source, list) else source


@dataclass
class Reconstruction:
    """The notebook to grade and what was noticed while building it."""

    notebook: nbformat.NotebookNode
    notes: list[str] = field(default_factory=list)
    answered: int = 0
    student_cells: list[str] = field(default_factory=list)


def reconstruct(submission: nbformat.NotebookNode, release: nbformat.NotebookNode,
                assignment: str) -> Reconstruction:
    """Rebuild ``submission`` on the release's cells; raise BadSubmission for a wrong notebook."""
    release_keys = [_key(c) for c in release.cells]
    solution_keys = {_key(c) for c in release.cells if c.get("metadata", {}).get("nbgrader", {}).get("solution")}
    known = set(release_keys)
    submitted: dict[str, dict] = {}
    added_after: dict[str | None, list[dict]] = {}
    duplicates = set()
    previous: str | None = None
    for cell in submission.cells:
        key = _key(cell)
        if key in known:
            if key in submitted:
                duplicates.add(key)
                continue
            submitted[key] = cell
            previous = key
        elif cell.get("cell_type") == "code" and _text(cell).strip():
            added_after.setdefault(previous, []).append(cell)
    graded_keys = {_key(c) for c in release.cells if c.get("metadata", {}).get("nbgrader", {}).get("grade")}
    if not (set(submitted) & (solution_keys | graded_keys)):
        raise BadSubmission(f"this is not the {assignment} notebook: none of its cells were found")
    result = Reconstruction(notebook=copy.deepcopy(release))
    cells: list = []
    used = set(known)
    for cell in added_after.get(None, []):
        cells.append(_student_cell(cell, len(cells), used))
    for cell in result.notebook.cells:
        key = _key(cell)
        if key in solution_keys and key in submitted:
            cell["source"] = _text(submitted[key])
            result.answered += "NotImplementedError" not in cell["source"]
            result.student_cells.append(key)
        cells.append(cell)
        for extra in added_after.get(key, []):
            cells.append(_student_cell(extra, len(cells), used))
    result.student_cells += [c["id"] for c in cells if c.get("metadata", {}).get("course_added")]
    result.notebook.cells = cells
    missing = [k for k in release_keys if k not in submitted]
    if missing:
        result.notes.append(f"{len(missing)} deleted cell(s) restored")
    if duplicates:
        result.notes.append(f"duplicated cell(s) ignored: {', '.join(sorted(duplicates))}")
    return result


def _student_cell(cell: dict, index: int, used: set[str]) -> nbformat.NotebookNode:
    """A cell the student added: plain code, no nbgrader metadata, its own id kept when free."""
    new = nbformat.v4.new_code_cell(_text(cell))
    wanted = str(cell.get("id") or "")
    new["id"] = wanted if wanted and wanted not in used and len(wanted) <= 64 else f"student-added-{index:03d}"
    used.add(new["id"])
    new.metadata["course_added"] = True
    return new


# --------------------------------------------------------------------------- static scan


def _dotted(node: ast.AST) -> str | None:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
        return ".".join(reversed(parts))
    return None


def _suspicious_path(node: ast.AST) -> str | None:
    for sub in ast.walk(node):
        if isinstance(sub, ast.Constant) and isinstance(sub.value, str):
            value = sub.value
            if value.startswith(("/", "~")) or ".." in value.replace("\\", "/").split("/"):
                return value
    return None


def scan(source: str, modules: set[str] | None = None) -> list[str]:
    """Return review flags for one cell of student code (an empty list when nothing is odd)."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return []
    watched = WATCHED_MODULES | (modules or set())
    flags: list[str] = []

    def add(flag: str) -> None:
        if flag not in flags:
            flags.append(flag)

    for node in ast.walk(tree):
        if isinstance(node, (ast.Assign, ast.AugAssign, ast.AnnAssign, ast.Delete)):
            targets = node.targets if isinstance(node, (ast.Assign, ast.Delete)) else [node.target]
            for target in targets:
                if isinstance(target, ast.Attribute):
                    name = _dotted(target)
                    if name and name.split(".")[0] in watched:
                        add(f"monkeypatch: assigns {name}")
                if isinstance(target, ast.Subscript) and _dotted(target.value) in ("sys.modules", "__builtins__"):
                    add(f"monkeypatch: changes {_dotted(target.value)}")
                if isinstance(target, ast.Name) and target.id == "__builtins__":
                    add("monkeypatch: replaces __builtins__")
        elif isinstance(node, ast.Call):
            name = _dotted(node.func) or ""
            if name in ("setattr", "delattr") and node.args and (_dotted(node.args[0]) or "").split(".")[0] in watched:
                add(f"monkeypatch: {name}({_dotted(node.args[0])}, ...)")
            if name.endswith(("mock.patch", "patch.object")) or name in ("patch", "importlib.reload"):
                add(f"monkeypatch: calls {name}")
            if name in EXIT_CALLS:
                add(f"process exit: calls {name}")
            if name in PROCESS_CALLS or name.startswith(("subprocess.", "socket.", "urllib.", "http.")):
                add(f"process or network: calls {name}")
            if name in FILE_CALLS or name.split(".")[-1] in ("unlink", "rmdir", "write_text", "write_bytes"):
                path = _suspicious_path(node)
                if path is not None:
                    add(f"file access outside the scratch folder: {name}({path!r})")
                elif name.startswith(("os.", "shutil.")) or name == "sqlite3.connect":
                    add(f"file operation: calls {name}")
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [a.name for a in node.names] + ([node.module] if isinstance(node, ast.ImportFrom) and node.module else [])
            for name in names:
                if name.split(".")[0] in ("ctypes", "socket", "subprocess", "sqlite3", "gc", "inspect"):
                    add(f"imports {name}")
    return flags


def scan_notebook(nb: nbformat.NotebookNode, cell_ids: list[str]) -> list[str]:
    """Scan the given student cells; each flag is prefixed with its cell id."""
    modules = set()
    for cell in nb.cells:
        if cell.get("cell_type") != "code":
            continue
        try:
            for node in ast.walk(ast.parse(_text(cell))):
                if isinstance(node, ast.Import):
                    modules.update((a.asname or a.name).split(".")[0] for a in node.names)
                elif isinstance(node, ast.ImportFrom):
                    modules.update(a.asname or a.name for a in node.names)
        except SyntaxError:
            continue
    wanted = set(cell_ids)
    flags = []
    for cell in nb.cells:
        if cell.get("id") in wanted or _key(cell) in wanted:
            flags += [f"{_key(cell)}: {flag}" for flag in scan(_text(cell), modules)]
    return flags
