"""What a submission may change, and what it may not.

``load_submission`` turns whatever a student handed in into a notebook or a one-line reason
(symlinks, bad JSON, wrong versions and malformed cells included); ``reconstruct`` rebuilds it
from the release so that only the student's answer cells (and cells the student added) come
from the submission: test cells, instructions and metadata come from the instructor, deleted
cells come back, duplicates are dropped.

``scan`` reads student code (it never runs it) and returns flags of two kinds:

* **holds**: code that can change how later cells run or are judged: IPython's shell and its
  hooks, tracing, builtins, frames and dunder reflection, dynamic code, pickles, threads, signals,
  special methods that decide comparisons, monkeypatching modules, and rebinding a name that locked
  cells define and later locked cells use. Tests that run after such a cell are held (scored 0)
  until an instructor has looked (see ``gradeexec``);
* **review** flags: file access outside the scratch folder, subprocesses and sockets, process exits.
  The submission is marked for review; its points stand.
"""

from __future__ import annotations

import ast
import builtins
import copy
import json
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from course_tools.terminal import utf8_safe

WATCHED_MODULES = {"torch", "nn", "F", "np", "numpy", "math", "builtins", "sys", "os", "course_utils",
                   "random", "functools", "importlib", "plt", "matplotlib", "mock", "unittest"}
EXIT_CALLS = {"os._exit", "sys.exit", "exit", "quit", "os.kill", "os.abort", "os.killpg", "ctypes.CDLL",
              "faulthandler._sigsegv"}
PROCESS_CALLS = {"os.system", "os.popen", "os.execv", "os.execve", "os.fork", "subprocess.run",
                 "subprocess.Popen", "subprocess.call", "subprocess.check_call", "subprocess.check_output",
                 "socket.socket", "socket.create_connection"}
FILE_CALLS = {"open", "Path", "pathlib.Path", "os.remove", "os.unlink", "os.rmdir", "os.rename",
              "os.replace", "os.chmod", "os.listdir", "os.walk", "os.scandir", "shutil.rmtree",
              "shutil.move", "shutil.copy", "shutil.copytree", "glob.glob", "sqlite3.connect", "io.open"}

HOLD = "changes how cells run"
MONKEYPATCH = "monkeypatch"
HOLD_PREFIXES = (HOLD + ":", MONKEYPATCH + ":")

# Modules whose only use in an exercise would be to reach around the tests.
HOLD_MODULES = {"IPython", "ipykernel", "jupyter_client", "builtins", "__builtin__", "importlib", "ctypes",
                "gc", "inspect", "types", "code", "codeop", "runpy", "pickle", "_pickle", "cPickle", "copyreg",
                "marshal", "dill", "cloudpickle", "shelve", "threading", "_thread", "multiprocessing",
                "concurrent", "asyncio", "signal", "atexit", "sched", "unittest", "mock", "cffi", "trace",
                "tracemalloc", "sysconfig", "site", "zipimport", "pkgutil", "faulthandler", "weakref"}
HOLD_SUBMODULES = ("torch.library", "torch.utils.cpp_extension", "torch.overrides", "torch._", "torch.jit",
                   "torch.package", "torch.utils._python_dispatch", "numpy.ctypeslib", "torch.utils._",
                   "torch.fx", "torch.export", "torch.compiler")
# Built-in functions that run code from strings or reach into namespaces and frames.
HOLD_NAMES = {"get_ipython", "globals", "locals", "vars", "eval", "exec", "compile", "__import__", "breakpoint",
              "__builtins__", "__builtin__", "__loader__", "__spec__", "memoryview"}
# Attributes that reach the interpreter's and IPython's machinery, whatever object they are read from.
HOLD_ATTRS = {"settrace", "setprofile", "_getframe", "_current_frames", "addaudithook", "displayhook",
              "excepthook", "breakpointhook", "unraisablehook", "meta_path", "path_hooks", "path_importer_cache",
              "modules", "monitoring", "setrecursionlimit", "setswitchinterval",
              "input_transformers_cleanup", "input_transformers_post", "ast_transformers",
              "input_transformer_manager", "set_custom_exc", "custom_exceptions", "CustomTB", "showtraceback",
              "_showtraceback", "showsyntaxerror", "run_cell", "run_cell_async", "run_ast_nodes", "run_code",
              "user_ns", "user_global_ns", "user_expressions", "display_pub", "do_execute", "shell_handlers",
              "events", "kernel", "tb_frame", "tb_next", "f_globals", "f_locals", "f_back", "f_builtins", "f_code",
              "gi_frame", "cr_frame", "ag_frame", "co_code", "func_globals", "ast_parse", "transform_cell",
              "InteractiveTB", "SyntaxTB", "builtin_trap", "display_trap", "pub_socket", "overrides",
              "TorchFunctionMode", "TorchDispatchMode", "library", "cpp_extension", "_ip", "shell"}
# Special methods an exercise may define: construction, display and containers. Others (comparisons,
# conversions, __torch_function__, __getattr__ ...) decide what a test's assert sees.
ALLOWED_DUNDERS = {"__init__", "__repr__", "__str__", "__len__", "__getitem__", "__iter__", "__next__",
                   "__call__", "__post_init__", "__enter__", "__exit__", "__contains__", "__name__", "__doc__",
                   "__qualname__", "__main__", "__file__", "__version__", "__all__", "__slots__"}
BUILTIN_NAMES = {n for n in dir(builtins) if not n.startswith("_")}


class BadSubmission(Exception):
    """A file that cannot be graded as this assignment; the message is the one-line reason."""


# --------------------------------------------------------------------------- reading


def symlinks_in(folder: Path) -> list[str]:
    """Symbolic links at or under ``folder`` (never followed), as paths relative to its parent."""
    found: list[str] = []
    if os.path.islink(folder):
        return [folder.name]
    for here, dirs, files in os.walk(folder, followlinks=False):
        for name in dirs + files:
            path = os.path.join(here, name)
            if os.path.islink(path):
                found.append(os.path.relpath(path, folder.parent))
    return sorted(found)


def _read_plain(path: Path) -> bytes:
    """Read a regular file without following a link (a link swapped in at the last moment fails)."""
    try:
        if not stat.S_ISREG(os.lstat(path).st_mode):
            raise BadSubmission("the notebook is not a regular file")
    except OSError as error:
        raise BadSubmission(f"the notebook cannot be read: {error.strerror or error}") from None
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(path, flags)
    except OSError as error:
        raise BadSubmission(f"the notebook cannot be read: {error.strerror or error} (a symlink?)") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise BadSubmission("the notebook is not a regular file")
        chunks = []
        while chunk := os.read(fd, 1 << 20):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def _check_cells(data: dict) -> None:
    """Raise BadSubmission unless every cell has the shape nbformat 4 promises."""
    cells = data.get("cells")
    if not isinstance(cells, list):
        raise BadSubmission("not a valid notebook: 'cells' is not a list")
    for number, cell in enumerate(cells, 1):
        where = f"not a valid notebook: cell {number}"
        if not isinstance(cell, dict):
            raise BadSubmission(f"{where} is not an object")
        if cell.get("cell_type") not in ("code", "markdown", "raw"):
            raise BadSubmission(f"{where} has cell_type {str(cell.get('cell_type'))[:30]!r}")
        source = cell.get("source", "")
        if not (isinstance(source, str) or isinstance(source, list) and all(isinstance(s, str) for s in source)):
            raise BadSubmission(f"{where}: its source is {type(source).__name__}, not text")
        if not isinstance(cell.get("metadata", {}), dict):
            raise BadSubmission(f"{where}: its metadata is not an object")
        nbgrader_meta = cell.get("metadata", {}).get("nbgrader", {})
        if not isinstance(nbgrader_meta, dict):
            raise BadSubmission(f"{where}: its nbgrader metadata is not an object")
        if "id" in cell and not isinstance(cell["id"], str):
            raise BadSubmission(f"{where}: its id is not text")
        if not isinstance(nbgrader_meta.get("grade_id", ""), str):
            raise BadSubmission(f"{where}: its grade_id is not text")
        if cell["cell_type"] == "code" and not isinstance(cell.get("outputs", []), list):
            raise BadSubmission(f"{where}: its outputs are not a list")


MAX_NOTEBOOK_BYTES = 100 * 2**20


def _writable(value):
    """The parsed JSON with every string writable as UTF-8 (a lone surrogate becomes U+FFFD) and no
    widget state (nbconvert's widget handling fails on crafted state; grading needs none)."""
    if isinstance(value, str):
        return utf8_safe(value)
    if isinstance(value, list):
        return [_writable(item) for item in value]
    if isinstance(value, dict):
        return {_writable(key): _writable(item) for key, item in value.items()
                if not (isinstance(key, str) and key.startswith("application/vnd.jupyter.widget"))
                and key != "widgets"}
    return value


def load_submission(path: Path | None) -> nbformat.NotebookNode:
    """Read a submitted notebook (upgrading old nbformat versions) or raise BadSubmission."""
    if path is None or not (path.exists() or path.is_symlink()):
        raise BadSubmission("no notebook submitted")
    if path.is_symlink():
        raise BadSubmission("symlink: the notebook is a symbolic link, not a file")
    size = os.lstat(path).st_size
    if size > MAX_NOTEBOOK_BYTES:
        raise BadSubmission(f"the notebook is {size / 2**20:,.0f} MiB, over the grader's limit of "
                            f"{MAX_NOTEBOOK_BYTES // 2**20} MiB (clear its outputs and submit again)")
    raw = _read_plain(path)
    if not raw.strip():
        raise BadSubmission("the notebook file is empty")
    try:
        data = json.loads(raw.decode("utf-8", errors="replace"))
    except json.JSONDecodeError as error:
        raise BadSubmission(f"not a valid notebook: invalid JSON ({error.msg} at line {error.lineno})") from None
    except RecursionError:
        raise BadSubmission("not a valid notebook: JSON nested too deeply") from None
    try:
        data = _writable(data)
    except RecursionError:
        raise BadSubmission("not a valid notebook: JSON nested too deeply") from None
    if not isinstance(data, dict) or "cells" not in data and "worksheets" not in data:
        raise BadSubmission("not a notebook: no cells")
    if data.get("cells") == []:
        raise BadSubmission("the notebook has no cells")
    major = data.get("nbformat")
    if major not in (3, 4):
        raise BadSubmission(f"unsupported notebook format version {str(major)[:20]} (expected 4)")
    try:
        if major == 4:
            _check_cells(data)
        nb = nbformat.reads(json.dumps(data), as_version=4)
        if major == 3:
            _check_cells(nb)
    except BadSubmission:
        raise
    except Exception as error:  # nbformat raises a variety of errors for broken structure
        raise BadSubmission(f"not a valid notebook: {type(error).__name__}") from None
    if not nb.cells:
        raise BadSubmission("the notebook has no cells")
    return nb


def _key(cell: dict) -> str | None:
    meta = cell.get("metadata", {})
    meta = meta.get("nbgrader", {}) if isinstance(meta, dict) else {}
    return (meta.get("grade_id") if isinstance(meta, dict) else None) or cell.get("id")


def _text(cell: dict) -> str:
    source = cell.get("source", "")
    return "".join(source) if isinstance(source, list) else str(source)


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
    # cells are matched by grade id, else by cell id; a notebook without the release's cell ids (nbformat
    # 3 or 4.0-4.4, where nbformat invents new ids) still holds the release's own cells word for word:
    # those match by their text, so they are neither "deleted" nor taken for the student's own code
    by_text: dict[tuple[str, str], list[str]] = {}
    for cell in release.cells:
        if _key(cell) not in solution_keys:
            by_text.setdefault((cell.get("cell_type"), _text(cell).strip()), []).append(_key(cell))
    for cell in submission.cells:
        key = _key(cell)
        if key not in known:
            same = [k for k in by_text.get((cell.get("cell_type"), _text(cell).strip()), []) if k not in submitted]
            key = same[0] if same and _text(cell).strip() else key
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
    import re

    new = nbformat.v4.new_code_cell(_text(cell))
    wanted = str(cell.get("id") or "")
    ok = wanted and wanted not in used and re.fullmatch(r"[a-zA-Z0-9_-]{1,64}", wanted)
    new["id"] = wanted if ok else f"student-added-{index:03d}"
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


def _root(node: ast.AST) -> str | None:
    while isinstance(node, (ast.Attribute, ast.Subscript)):
        node = node.value
    return node.id if isinstance(node, ast.Name) else None


def _suspicious_path(node: ast.AST) -> str | None:
    for sub in ast.walk(node):
        if isinstance(sub, ast.Constant) and isinstance(sub.value, str):
            value = sub.value
            if value.startswith(("/", "~")) or ".." in value.replace("\\", "/").split("/"):
                return value
    return None


def _is_dunder(name: str) -> bool:
    return len(name) > 4 and name.startswith("__") and name.endswith("__")


def _module_level_bindings(tree: ast.Module) -> list[tuple[str, ast.AST]]:
    """(name, node) for every name the code binds in the notebook's namespace."""
    found: list[tuple[str, ast.AST]] = []
    declared_global: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Global):
            declared_global.update(node.names)
        elif isinstance(node, ast.NamedExpr) and isinstance(node.target, ast.Name):
            found.append((node.target.id, node))

    def visit(node: ast.AST, top: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                if top:
                    found.append((child.name, child))
                for sub in child.decorator_list:
                    visit(sub, top)
                visit(child, False)
                continue
            if isinstance(child, ast.Lambda):
                visit(child, False)
                continue
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                for alias in child.names:
                    name = (alias.asname or alias.name).split(".")[0]
                    if top or name in declared_global:
                        found.append((name, child))
            elif isinstance(child, ast.Name) and isinstance(child.ctx, (ast.Store, ast.Del)):
                if top or child.id in declared_global:
                    found.append((child.id, child))
            elif isinstance(child, ast.ExceptHandler) and child.name and (top or child.name in declared_global):
                found.append((child.name, child))
            elif isinstance(child, (ast.MatchAs, ast.MatchStar)) and child.name and top:
                found.append((child.name, child))
            elif isinstance(child, ast.MatchMapping) and child.rest and top:
                found.append((child.rest, child))
            visit(child, top)

    visit(tree, True)
    return found


def _function_locals(func: ast.AST) -> set[str]:
    """Names local to a function or lambda: its parameters and what its body binds (not globals)."""
    args = func.args
    names = {a.arg for a in args.posonlyargs + args.args + args.kwonlyargs}
    names |= {a.arg for a in (args.vararg, args.kwarg) if a is not None}
    declared: set[str] = set()
    body = func.body if isinstance(func.body, list) else [func.body]
    stack = list(body)
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.Global, ast.Nonlocal)):
            declared.update(node.names)
        if isinstance(node, ast.Name) and isinstance(node.ctx, (ast.Store, ast.Del)):
            names.add(node.id)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
            continue
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            pass  # a module imported inside a function is still the shared module: patching it counts
        elif isinstance(node, ast.arg):
            names.add(node.arg)
        stack.extend(ast.iter_child_nodes(node))
    return names - declared


def _with_locals(tree: ast.AST):
    """Yield (node, names local to the innermost function around it) for every node."""
    stack: list[tuple[ast.AST, frozenset]] = [(tree, frozenset())]
    while stack:
        node, local = stack.pop()
        yield node, local
        inner = local
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            inner = local | _function_locals(node)
        elif isinstance(node, (ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)):
            inner = local | {n.id for g in node.generators for n in ast.walk(g.target) if isinstance(n, ast.Name)}
        stack.extend((child, inner) for child in ast.iter_child_nodes(node))


def imported_modules(sources: list[str]) -> set[str]:
    """Names that refer to modules (or to what was imported from one) in these cells."""
    modules: set[str] = set()
    for source in sources:
        try:
            tree = ast.parse(source)
        except SyntaxError:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                modules.update((a.asname or a.name).split(".")[0] for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                modules.update(a.asname or a.name for a in node.names)
    return modules


def _parse_cell(source: str) -> tuple[ast.Module | None, bool]:
    """(tree, uses IPython syntax): magics and shell escapes are read as IPython runs them."""
    try:
        return ast.parse(source), False
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        pass
    try:
        from IPython.core.inputtransformer2 import TransformerManager

        transformed = TransformerManager().transform_cell(source)
        return ast.parse(transformed), transformed.strip() != source.strip()
    except Exception:  # the kernel cannot run it either: nothing of it executes
        return None, False


HISTORY_NAMES = {"In", "Out", "_ih", "_oh", "_dh", "_i", "_ii", "_iii", "__", "___", "exit", "quit"}


def _is_history(name: str) -> bool:
    return name in HISTORY_NAMES or (name.startswith(("_i", "_")) and name.lstrip("_i").isdigit() and name != "_")


def scan(source: str, modules: set[str] | None = None, protected: set[str] | None = None) -> list[str]:
    """Return flags for one cell of student code (an empty list when nothing is odd).

    ``modules``: names that refer to modules in this notebook; ``protected``: names that locked cells
    bound before this cell and later locked cells rely on.
    """
    tree, ipython_syntax = _parse_cell(source)
    if tree is None:
        return []
    modules = WATCHED_MODULES | (modules or set()) | imported_modules([ast.unparse(tree)])
    protected = BUILTIN_NAMES if protected is None else protected  # no context: every built-in counts
    shared = modules | protected | BUILTIN_NAMES
    flags: list[str] = []

    def add(flag: str) -> None:
        if flag not in flags:
            flags.append(flag)

    if ipython_syntax:
        add(f"{HOLD}: uses IPython magics or shell escapes (% or !)")
    called = {id(n.func) for n in ast.walk(tree) if isinstance(n, ast.Call)}
    for name, _node in _module_level_bindings(tree):
        if name in protected and name in BUILTIN_NAMES:
            add(f"{HOLD}: rebinds the built-in {name}, which the tests use")
        elif name in protected:
            add(f"{HOLD}: rebinds {name}, which the notebook's locked cells define and its tests use")
    for node, local in _with_locals(tree):
        if isinstance(node, (ast.Assign, ast.AugAssign, ast.AnnAssign, ast.Delete)):
            targets = node.targets if isinstance(node, (ast.Assign, ast.Delete)) else [node.target]
            for target in targets:
                for sub in ast.walk(target):
                    root = _root(sub)
                    if root in local:
                        continue
                    if isinstance(sub, ast.Attribute) and isinstance(sub.ctx, (ast.Store, ast.Del)):
                        name = _dotted(sub) or f"{root}...{sub.attr}"
                        if root in shared:
                            add(f"{MONKEYPATCH}: assigns {name}")
                    if isinstance(sub, ast.Subscript) and isinstance(sub.ctx, (ast.Store, ast.Del)):
                        if _dotted(sub.value) in ("sys.modules", "__builtins__") or root in modules:
                            add(f"{MONKEYPATCH}: changes {_dotted(sub.value) or root}")
        elif isinstance(node, ast.Call):
            name = _dotted(node.func) or ""
            last = name.split(".")[-1]
            if last in ("setattr", "delattr") and node.args:
                first = node.args[0]
                if not (isinstance(first, ast.Name) and first.id == "self") or last == "delattr":
                    add(f"{MONKEYPATCH}: {last}({_dotted(first) or '...'}, ...)")
            if last in ("getattr", "hasattr") and len(node.args) >= 2:
                attr = node.args[1]
                if not (isinstance(attr, ast.Constant) and isinstance(attr.value, str)):
                    add(f"{HOLD}: {last} with a computed name")
                elif (attr.value in HOLD_ATTRS or attr.value in HOLD_NAMES or attr.value.startswith("_")
                      and attr.value not in ALLOWED_DUNDERS):
                    add(f"{HOLD}: {last}(..., {attr.value[:40]!r})")
            if name == "type" and len(node.args) == 3:
                add(f"{HOLD}: builds a class with type(name, bases, namespace)")
            if last in ("attrgetter", "methodcaller"):
                add(f"{HOLD}: operator.{last}")
            if name.endswith(("mock.patch", "patch.object")) or name in ("patch", "importlib.reload"):
                add(f"{MONKEYPATCH}: calls {name}")
            if name in EXIT_CALLS:
                add(f"process exit: calls {name}")
            if name in PROCESS_CALLS or name.startswith(("subprocess.", "socket.", "urllib.", "http.")) or \
                    last.startswith(("posix_spawn", "spawn", "fork", "exec")) and name.startswith("os."):
                add(f"process or network: calls {name}")
            if name in FILE_CALLS or last in ("unlink", "rmdir", "write_text", "write_bytes"):
                path = _suspicious_path(node)
                if path is not None:
                    add(f"file access outside the scratch folder: {name}({path[:80]!r})")
                elif name.startswith(("os.", "shutil.")) or name == "sqlite3.connect":
                    add(f"file operation: calls {name}")
            for keyword in node.keywords:
                if keyword.arg in ("allow_pickle", "weights_only") and not (
                        isinstance(keyword.value, ast.Constant) and keyword.value.value is (keyword.arg == "weights_only")):
                    add(f"{HOLD}: loads pickled code ({keyword.arg}=...)")
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [a.name for a in node.names]
            full = [node.module] if isinstance(node, ast.ImportFrom) and node.module else names
            for module in full:
                top = module.split(".")[0]
                if top in HOLD_MODULES or module.startswith(HOLD_SUBMODULES) or top.startswith("_"):
                    add(f"{HOLD}: imports {module}")
                elif top in ("socket", "subprocess", "sqlite3"):
                    add(f"imports {module}")
            for alias in node.names:
                if alias.asname and _is_dunder(alias.asname):
                    add(f"{HOLD}: binds {alias.asname}")
            if isinstance(node, ast.ImportFrom):
                for alias in node.names:
                    if alias.name == "*" or alias.name in HOLD_ATTRS or alias.name in HOLD_NAMES \
                            or alias.name.startswith("_"):
                        add(f"{HOLD}: imports {alias.name} from {node.module}")
                    if node.module and f"{node.module}.{alias.name}".startswith(HOLD_SUBMODULES):
                        add(f"{HOLD}: imports {node.module}.{alias.name}")
        elif isinstance(node, ast.Name):
            if node.id in HOLD_NAMES:
                add(f"{HOLD}: uses {node.id}")
            elif node.id in ("setattr", "delattr", "getattr") and id(node) not in called:
                add(f"{HOLD}: passes {node.id} around")
            elif node.id in ("exit", "quit") and id(node) in called:
                pass  # a process exit: flagged for review above
            elif _is_history(node.id) and node.id not in local:
                add(f"{HOLD}: uses the shell's history or itself ({node.id})")
            elif isinstance(node.ctx, ast.Store) and _is_dunder(node.id) and node.id not in ALLOWED_DUNDERS:
                add(f"{HOLD}: defines {node.id}")
        elif isinstance(node, ast.Attribute):
            dotted = _dotted(node) or ""
            if node.attr in HOLD_ATTRS:
                add(f"{HOLD}: uses .{node.attr}")
            elif _is_dunder(node.attr) and node.attr not in ALLOWED_DUNDERS:
                add(f"{HOLD}: uses .{node.attr}")
            elif dotted.startswith(HOLD_SUBMODULES):
                add(f"{HOLD}: uses {dotted}")
            elif (node.attr.startswith("_") and not _is_dunder(node.attr) and dotted not in EXIT_CALLS
                  and _root(node) not in local and _root(node) not in ("self", "cls")):
                add(f"{HOLD}: uses the private {dotted or node.attr}")
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            if _is_dunder(node.name) and node.name not in ALLOWED_DUNDERS:
                add(f"{HOLD}: defines {node.name}")
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            value = node.value
            if (value.startswith("__") or value.endswith("__")) and value.strip("_") and value not in ALLOWED_DUNDERS:
                add(f"{HOLD}: names {value[:40]}")
        elif isinstance(node, ast.ClassDef):
            for keyword in node.keywords:
                if keyword.arg == "metaclass":
                    add(f"{HOLD}: a metaclass")
        elif isinstance(node, ast.MatchMapping) and node.rest and node.rest in protected:
            add(f"{HOLD}: rebinds {node.rest}, which the notebook's locked cells define and its tests use")
    return flags


def is_hold(flag: str) -> bool:
    """True for flags whose code can change how later cells run (their tests are held for review)."""
    body = flag.split(": ", 1)[1] if ": " in flag and not flag.startswith(HOLD_PREFIXES) else flag
    return body.startswith(HOLD_PREFIXES)


def protected_names(nb: nbformat.NotebookNode) -> set[str]:
    """Names a locked cell binds and a later locked cell reads before binding it itself, and the
    built-ins that locked cells read."""
    from course_tools.gradeexec import bound_names

    bound: set[str] = set()
    protected: set[str] = set()
    for cell in nb.cells:
        meta = cell.get("metadata", {})
        if cell.get("cell_type") != "code" or meta.get("course_added") or meta.get("nbgrader", {}).get("solution"):
            continue
        source = _text(cell)
        try:
            tree = ast.parse(source)
        except SyntaxError:
            continue
        own: set[str] = set()
        for node in tree.body:  # reads before the cell's own binding, in order (a fair approximation)
            reads = {n.id for n in ast.walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
            protected |= (reads - own) & bound
            own |= bound_names(ast.unparse(node))
        bound |= own
    for source in (_text(c) for c in nb.cells if c.get("cell_type") == "code"
                   and not c.get("metadata", {}).get("course_added")
                   and not c.get("metadata", {}).get("nbgrader", {}).get("solution")):
        protected |= {name for name in imported_modules([source])} & bound
        try:
            protected |= {n.id for n in ast.walk(ast.parse(source)) if isinstance(n, ast.Name)} & BUILTIN_NAMES
        except SyntaxError:
            pass
    return protected


def scan_notebook(nb: nbformat.NotebookNode, cell_ids: list[str]) -> list[str]:
    """Scan the given student cells; each flag is prefixed with its cell id."""
    modules = imported_modules([_text(c) for c in nb.cells if c.get("cell_type") == "code"])
    protected = protected_names(nb)
    wanted = set(cell_ids)
    flags = []
    locked_so_far: set[str] = set()
    from course_tools.gradeexec import bound_names

    for cell in nb.cells:
        if cell.get("cell_type") != "code":
            continue
        if cell.get("id") in wanted or _key(cell) in wanted:
            context = protected & (locked_so_far | BUILTIN_NAMES)
            flags += [f"{_key(cell)}: {flag}" for flag in scan(_text(cell), modules, context)]
        else:
            locked_so_far |= bound_names(_text(cell))
    return flags


def mark_holds(nb: nbformat.NotebookNode, flags: list[str]) -> None:
    """Write the hold flags onto their cells (``metadata.course_hold``) and the protected names onto the notebook."""
    by_cell: dict[str, list[str]] = {}
    for flag in flags:
        key, _, body = flag.partition(": ")
        if body.startswith(HOLD_PREFIXES):
            by_cell.setdefault(key, []).append(body)
    for cell in nb.cells:
        if _key(cell) in by_cell:
            cell.metadata["course_hold"] = "; ".join(by_cell[_key(cell)][:3])
    nb.metadata["course_protected"] = sorted(protected_names(nb))
