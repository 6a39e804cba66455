"""``course grade``: autograde submissions with nbgrader, safely, in parallel, losing nothing.

In: ``SUBMISSIONS/<student>/<assignment>/<notebook>.ipynb`` (nbgrader's layout).
Out: ``OUT/grades.csv``, ``OUT/feedback/<student>/<assignment>/<notebook>.html`` and, for the
instructor, the graded notebooks in ``OUT/graded/<student>/<assignment>/``.

Every student is graded by a worker process (``--jobs N`` of them), one student at a time, in a
scratch course folder of its own, in these steps (one function each):

1. ``prepare``: the submission is read (a symlink anywhere, bad JSON, a malformed cell: a row and a
   one-line reason, never a traceback), rebuilt on the release so that only answer cells come from
   the student (integrity.py), and scanned; cells that may change how later cells run are marked;
2. ``make_scratch``: a one-student nbgrader course whose configuration is the repository's
   ``nbgrader_config.py`` plus the grader's own settings (``scratch_config``);
3. ``autograde``: nbgrader autogrades it with ``GuardedExecute`` (deadline, resistant cells stopped,
   kernel-death replay, review holds) in a kernel started by ``course_tools.sandbox``;
4. ``score``: the row's score and failed tests come from that student's gradebook, which applies
   nbgrader's own rule (``nbgrader.utils.determine_grade``) cell by cell;
5. ``feedback``: HTML without hidden tests, copied out; then the scratch folder is removed.

Students are passed to nbgrader under internal ids (``s`` + a hash), so any folder name works.
Finished students are remembered by a hash of their files, the solution and the settings, so an
interrupted run regrades only what was not finished; ``error`` rows (the grader failed, not the
student) are never remembered.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from functools import lru_cache
from pathlib import Path

import nbformat
from nbgrader.utils import is_solution

from course_tools.build import list_assignments, with_scripts_on_path
from course_tools.feedback import (
    FEEDBACK_TEMPLATE,
    copy_feedback_mathjax,
    feedback_mathjax_url,
    feedback_template_dirs,
)
from course_tools.integrity import (
    BadSubmission,
    load_submission,
    mark_holds,
    reconstruct,
    scan_notebook,
    symlinks_in,
)
from course_tools.i18n import edition, notebook_language
from course_tools.sandbox import die_with_parent
from course_tools.terminal import printable

FIELDS = ["student", "assignment", "score", "max_score", "status", "reason", "flags",
          "failed_tests", "sandboxed", "seconds"]
LAYOUT = "SUBMISSIONS/<student>/<assignment>/<notebook>.ipynb"
NBGRADER_EXECUTE_DEFAULT = 30  # nbgrader's own Execute.timeout


class LayoutError(ValueError):
    """The submissions folder is not in nbgrader's layout; the message says what was found."""


class NoSandbox(RuntimeError):
    """Grading would run untrusted code unsandboxed and the instructor did not ask for it."""


@dataclass(frozen=True)
class Settings:
    """Limits for one grading run (``None``: taken from the course or the solution's runtime)."""

    cell_timeout: int | None = None  # None: the repository's Execute.timeout
    notebook_timeout: int | None = None  # None: a multiple of the solution's own runtime
    memory_gb: float = 4.0
    runtime_factor: float = 3.0
    interrupt_grace: int = 10
    sandbox: bool = True  # False only when the instructor says --no-sandbox: student code then runs as the grader


@dataclass
class GradeRow:
    """One line of grades.csv."""

    student: str
    assignment: str
    score: float = 0.0
    max_score: float = 0.0
    status: str = "graded"  # graded | review | invalid | error
    reason: str = ""
    flags: list[str] = field(default_factory=list)
    failed_tests: list[str] = field(default_factory=list)
    sandboxed: bool = False
    seconds: float = 0.0

    def as_csv(self) -> dict:
        """Return the row as CSV fields."""
        row = asdict(self)
        row.update(score=f"{self.score:g}", max_score=f"{self.max_score:g}", flags="; ".join(self.flags),
                   failed_tests=" ".join(self.failed_tests), sandboxed="yes" if self.sandboxed else "no",
                   seconds=f"{self.seconds:.1f}")
        return row

    @property
    def needs_review(self) -> bool:
        """True when a person should look at this submission."""
        return self.status != "graded" or bool(self.flags)


def internal_id(student: str) -> str:
    """The id nbgrader sees for a student: safe on a command line, as a glob and as a file name."""
    return "s" + hashlib.sha256(student.encode("utf-8", "surrogateescape")).hexdigest()[:20]


def _tail(result, lines: int = 4) -> str:
    text = (result.stderr or "") + (result.stdout or "")
    errors = [line for line in text.splitlines() if "ERROR" in line or "Error" in line]
    return " | ".join((errors or text.splitlines())[-lines:])[:400]


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _sha(*parts: bytes) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(hashlib.sha256(part).digest())
    return digest.hexdigest()


def nbgrader_cmd(args: list[str], cwd: Path, timeout: float | None, env: dict) -> subprocess.CompletedProcess:
    """Run one nbgrader sub-command in a scratch course; it dies with the worker that started it."""
    return subprocess.run([sys.executable, "-m", "nbgrader", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env=with_scripts_on_path(env), preexec_fn=die_with_parent)


# --------------------------------------------------------------------------- configuration


def course_config(root: Path):
    """The repository's nbgrader configuration, as nbgrader itself would load it."""
    from traitlets.config.loader import PyFileConfigLoader

    return PyFileConfigLoader("nbgrader_config.py", path=str(root)).load_config()


def course_cell_timeout(root: Path) -> int:
    """``Execute.timeout`` of the repository's nbgrader_config.py (nbgrader's default when unset)."""
    config = course_config(root)
    return int(config.Execute.timeout) if "timeout" in config.Execute else NBGRADER_EXECUTE_DEFAULT


GRADER_PREPROCESSORS = {"nbgrader.preprocessors.Execute": "course_tools.gradeexec.GuardedExecute",
                        "nbgrader.preprocessors.execute.Execute": "course_tools.gradeexec.GuardedExecute"}
DEFAULT_AUTOGRADE = ["nbgrader.preprocessors.Execute", "nbgrader.preprocessors.IgnorePattern",
                     "nbconvert.preprocessors.ClearMetadataPreprocessor", "nbgrader.preprocessors.LimitOutput",
                     "nbgrader.preprocessors.SaveAutoGrades", "nbgrader.preprocessors.AssignLatePenalties",
                     "nbgrader.preprocessors.CheckCellMetadata"]


def _name(preprocessor) -> str:
    return preprocessor if isinstance(preprocessor, str) else f"{preprocessor.__module__}.{preprocessor.__qualname__}"


def autograde_preprocessors(config) -> list[str]:
    """The course's autograde pipeline with ``Execute`` replaced by ``GuardedExecute`` and ``CapOutput`` added."""
    listed = config.Autograde.get("autograde_preprocessors", None) if "Autograde" in config else None
    names = [GRADER_PREPROCESSORS.get(_name(p), _name(p)) for p in (listed or DEFAULT_AUTOGRADE)]
    if "course_tools.gradeexec.GuardedExecute" not in names:
        names.insert(0, "course_tools.gradeexec.GuardedExecute")
    if "course_tools.gradeexec.CapOutput" not in names:
        after = next((i for i, n in enumerate(names) if n.endswith("LimitOutput")), 0)
        names.insert(after + 1, "course_tools.gradeexec.CapOutput")
    return names


def scratch_config(root: Path, course_root: Path, *, cell_timeout: int, notebook_timeout: int, kernel_name: str, runtime: str,
                   interrupt_grace: int = 10, holds: bool = True) -> str:
    """nbgrader_config.py of a scratch course: the repository's file, then what the grader must set.

    The grader sets only the scratch course's folders and gradebook, the execution guards (kernel,
    limits, sockets) and the feedback pipeline that keeps hidden tests out; everything else the
    instructor configures (timeouts, output limits, late penalties, extra preprocessors ...) applies.
    """
    config = course_config(root)
    lines = [
        "c = get_config()  # noqa: F821",
        f"load_subconfig({str(Path(root).resolve() / 'nbgrader_config.py')!r})  # the course's own settings",
        "# --- the grader's settings (course grade) ---",
        'c.CourseDirectory.course_id = "course"',
        'c.CourseDirectory.source_directory = "source"',
        'c.CourseDirectory.release_directory = "release"',
        'c.CourseDirectory.submitted_directory = "submitted"',
        'c.CourseDirectory.autograded_directory = "autograded"',
        'c.CourseDirectory.feedback_directory = "feedback"',
        'c.CourseDirectory.db_url = "sqlite:///gradebook.db"',
        f"c.CourseDirectory.root = {str(course_root)!r}",
        'c.ClearOutput.remove_metadata_fields = {"collapsed", "scrolled", "execution", "ExecuteTime"}',
        "c.OverwriteCells.add_missing_cells = True",
        f"c.Autograde.autograde_preprocessors = {autograde_preprocessors(config)!r}",
        f"c.Execute.timeout = {int(cell_timeout)}",
        "c.Execute.interrupt_on_timeout = True",
        f"c.Execute.kernel_name = {kernel_name!r}",
        f"c.GuardedExecute.notebook_timeout = {int(notebook_timeout)}",
        f"c.GuardedExecute.interrupt_grace = {int(interrupt_grace)}",
        f"c.GuardedExecute.holds = {bool(holds)!r}",
        "c.CapOutput.max_chars = 20000",
        'c.KernelManager.transport = "ipc"',
        f"c.KernelManager.ip = {runtime + '/k'!r}",
        f"c.KernelManager.connection_file = {runtime + '/kernel.json'!r}",
        'c.GenerateFeedback.preprocessors = ["nbgrader.preprocessors.GetGrades", '
        '"course_tools.feedback.ScrubHiddenTestText", "nbgrader.preprocessors.ClearHiddenTests", "course_tools.feedback.HideTestTracebacks", '
        '"course_tools.feedback.WithholdAfterHold", "course_tools.feedback.SanitiseOutputs", "course_tools.feedback.ShowEdition", "course_tools.feedback.DropHints", "course_tools.feedback.SummariseTests", "nbconvert.preprocessors.CSSHTMLHeaderPreprocessor"]',
        "c.ClearHiddenTests.enforce_metadata = False",
        # the course's feedback page (course_tools/templates/feedback/course_feedback.html.j2), MathJax from OUT/feedback/_mathjax
        *(f"c.HTMLExporter.{key} = {value!r}" for key, value in FEEDBACK_TEMPLATE.items()),
        f"c.HTMLExporter.extra_template_basedirs = {feedback_template_dirs()!r}",
        f"c.SummariseTests.mathjax_url = {feedback_mathjax_url()!r}",
    ]
    if "max_lines" not in config.get("LimitOutput", {}):
        lines.append("c.LimitOutput.max_lines = 1000")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- template


@dataclass(frozen=True)
class Template:
    """The assignment as generated once from solutions/: gradebook, release and extras (plain data)."""

    root: Path
    folder: Path
    assignment: str
    max_score: float
    extras: tuple[Path, ...]
    digest: str

    @property
    def release_path(self) -> Path:
        return self.folder / "release" / self.assignment / f"{self.assignment}.ipynb"

    @property
    def release(self) -> nbformat.NotebookNode:
        return _read_notebook(self.release_path)

    @property
    def solution(self) -> nbformat.NotebookNode:
        return _read_notebook(self.root / "solutions" / self.assignment / f"{self.assignment}.ipynb")


@lru_cache(maxsize=8)
def _read_cached(path: Path, mtime: float) -> str:
    return path.read_text(encoding="utf-8")


def _read_notebook(path: Path) -> nbformat.NotebookNode:
    return nbformat.reads(_read_cached(path, path.stat().st_mtime), as_version=4)


def _template_digest(root: Path, source: Path) -> str:
    """What the generated assignment depends on: every file of solutions/<assignment>/, the course's
    nbgrader_config.py, and the versions of nbgrader and of these tools."""
    import nbgrader

    files = sorted(p for p in source.rglob("*") if p.is_file() and ".ipynb_checkpoints" not in p.parts
                   and "__pycache__" not in p.parts)
    parts = [nbgrader.__version__.encode(), (root / "nbgrader_config.py").read_bytes(),
             Path(__file__).read_bytes(), (Path(__file__).parent / "release.py").read_bytes(),
             (Path(__file__).parent / "i18n.py").read_bytes()]
    for catalogue in sorted((root / "locale").glob(f"*/{source.name}.po")):  # the editions' instructions
        parts += [catalogue.relative_to(root).as_posix().encode(), catalogue.read_bytes()]
    for path in files:
        parts += [path.relative_to(source).as_posix().encode(), path.read_bytes()]
    return _sha(*parts)


def _template(root: Path, folder: Path, assignment: str, digest: str) -> Template:
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{folder / 'gradebook.db'}") as gb:
        max_score = float(gb.find_assignment(assignment).max_score)
    notebook = f"{assignment}.ipynb"
    extras = tuple(p for p in sorted((folder / "release" / assignment).rglob("*")) if p.is_file() and p.name != notebook)
    return Template(root=Path(root), folder=folder, assignment=assignment, max_score=max_score, extras=extras,
                    digest=digest)


def make_template(root: Path, assignment: str, work: Path) -> Template:
    """Generate the assignment (gradebook with every test) from solutions/ into ``work/template``;
    kept for the next run while nothing it depends on changes (``_template_digest``)."""
    folder = work / "template"
    source = root / "solutions" / assignment
    digest = _template_digest(root, source)
    stamp = folder / "digest.txt"
    if stamp.exists() and stamp.read_text() == digest and (folder / "gradebook.db").exists():
        return _template(root, folder, assignment, digest)
    if folder.exists():
        shutil.rmtree(folder)
    shutil.copytree(source, folder / "source" / assignment, symlinks=True,
                    ignore=shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__"))
    (folder / "nbgrader_config.py").write_text(scratch_config(
        root, folder.resolve(), cell_timeout=30, notebook_timeout=60, kernel_name="python3", runtime="/tmp"))
    result = nbgrader_cmd(["generate_assignment", assignment, "--force"], cwd=folder, timeout=600,
                          env=dict(os.environ))
    if result.returncode != 0:
        raise RuntimeError(f"could not generate {assignment} from solutions/: {_tail(result)}")
    stamp.write_text(digest)
    return _template(root, folder, assignment, digest)


def with_answers(release: nbformat.NotebookNode, solution: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """A copy of the release with the solution cells' answers (markers removed) filled in."""
    import re

    answers = {c.id: c.source for c in solution.cells
               if is_solution(c)}
    nb = nbformat.from_dict(json.loads(json.dumps(release)))
    for cell in nb.cells:
        if cell.id in answers:
            cell.source = re.sub(r"(?m)^[ \t]*### (BEGIN|END) SOLUTION\n?", "", answers[cell.id])
    return nb


def solved_release(template: Template) -> nbformat.NotebookNode:
    """The release with the instructor's answers in the solution cells (a perfect submission)."""
    return with_answers(template.release, template.solution)


# --------------------------------------------------------------------------- one student, step by step


@dataclass
class Job:
    """One student as the run that asked sees it (their folder is on its disk)."""

    student: str
    folder: Path | None
    template: Template
    work: Path
    out: Path
    settings: Settings
    trusted: bool = False
    digest: str = ""
    notebook: dict | None = None  # a notebook to grade as is (the instructor's solution)


def _find_notebook(folder: Path, assignment: str) -> Path | None:
    expected = folder / f"{assignment}.ipynb"
    if expected.exists() or expected.is_symlink():
        return expected
    others = sorted(p for p in folder.glob("*.ipynb") if not p.name.startswith("."))
    return others[0] if len(others) == 1 else None


def _missing_reason(folder: Path | None, assignment: str) -> str:
    """Why no notebook was found, with what the student folder holds instead."""
    if folder is None:
        return "no notebook submitted"
    student = folder.parent
    found = sorted(p.relative_to(student.parent).as_posix() for p in student.rglob("*.ipynb")
                   if ".ipynb_checkpoints" not in p.parts)[:3] if student.is_dir() else []
    if folder.is_dir() and len(list(folder.glob("*.ipynb"))) > 1:
        return f"no notebook submitted: several notebooks in {folder.name}/ and none named {assignment}.ipynb"
    hint = f" (expected {student.name}/{assignment}/<notebook>.ipynb; found {', '.join(found)})" if found else ""
    return "no notebook submitted" + hint


def prepare(job: Job, row: GradeRow) -> nbformat.NotebookNode:
    """Read, check and rebuild the submission; flag what the scan finds. Raises BadSubmission."""
    assignment = job.template.assignment
    if job.notebook is not None:
        nb = nbformat.from_dict(job.notebook)
        mark_holds(nb, [])
        return nb
    if job.folder is not None:
        links = symlinks_in(job.folder.parent) if job.folder.parent.exists() else []
        if links:
            raise BadSubmission(f"symlink: the submission contains symbolic links ({', '.join(links[:3])}); "
                                f"links are never followed")
    path = _find_notebook(job.folder, assignment) if job.folder is not None and job.folder.is_dir() else None
    if path is None:
        raise BadSubmission(_missing_reason(job.folder, assignment))
    if path.name != f"{assignment}.ipynb":
        row.flags.append(f"notebook named {path.name}, expected {assignment}.ipynb")
    try:
        submitted = load_submission(path)
        rebuilt = reconstruct(submitted, job.template.release, assignment)
    except BadSubmission:
        raise
    except (TypeError, AttributeError, KeyError, ValueError, RecursionError) as error:
        raise BadSubmission(f"not a valid notebook: {type(error).__name__}") from None
    row.reason = "; ".join(rebuilt.notes)
    lang = notebook_language(submitted)
    if lang is not None:
        # the Chinese edition: its feedback page in its language. nbgrader's autograde puts the release's
        # (locked, English) instructions back, so the translated ones travel in the notebook's metadata
        # (which `reconstruct` took from the release, not the submission) for the feedback page
        translated = edition(job.template.root, rebuilt.notebook, assignment, lang)
        rebuilt.notebook.metadata["language"] = lang
        rebuilt.notebook.metadata["course_edition"] = {
            cell.id: new.source for cell, new in zip(rebuilt.notebook.cells, translated.cells)
            if cell.cell_type == "markdown" and new.source != cell.source}
    flags = scan_notebook(rebuilt.notebook, rebuilt.student_cells)
    row.flags += flags
    mark_holds(rebuilt.notebook, flags)
    if rebuilt.answered == 0:
        row.reason = "; ".join(filter(None, ["no exercise answered", row.reason]))
    return rebuilt.notebook


# --------------------------------------------------------------------------- what travels to a worker


def pack_template(template: Template) -> bytes:
    """What a worker needs of the template, as one tar: the gradebook, source/, the release's extra
    files and the course's nbgrader_config.py. A worker on another machine reads nothing of ours."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        tar.add(template.folder / "gradebook.db", "gradebook.db")
        tar.add(template.folder / "source", "source")
        release = template.folder / "release" / template.assignment
        for extra in template.extras:
            tar.add(extra, "extras/" + extra.relative_to(release).as_posix())
        tar.add(Path(template.root) / "nbgrader_config.py", "course/nbgrader_config.py")
    return buffer.getvalue()


@dataclass
class Task:
    """Everything a worker needs to grade one student, as plain data (picklable, no path of ours)."""

    student: str
    assignment: str
    notebook: dict         # the submission as rebuilt and scanned by ``prepare``
    row: GradeRow          # the row so far (``prepare``'s notes and flags)
    pack: bytes            # ``pack_template``
    settings: Settings
    trusted: bool = False
    scratch_base: str | None = None  # where scratch courses go; None: the worker's temporary folder
    prestart: bool = True  # start a kernel for this worker's next student while this one runs


@dataclass
class Outcome:
    """What a worker sends back: the row, and the files to keep (kind -> {file name: bytes})."""

    row: GradeRow
    files: dict[str, dict[str, bytes]] = field(default_factory=dict)


@dataclass
class Scratch:
    """A one-student nbgrader course."""

    folder: Path
    sid: str
    runtime: Path
    env: dict

    @property
    def graded(self) -> Path:
        return self.folder / "autograded" / self.sid


def _unpack(pack: bytes, folder: Path, only: str | None = None) -> None:
    with tarfile.open(fileobj=io.BytesIO(pack), mode="r") as tar:
        members = [m for m in tar.getmembers() if only is None or m.name == only or m.name.startswith(only + "/")]
        if hasattr(tarfile, "data_filter"):
            tar.extractall(folder, members=members, filter="data")
        else:  # Python before 3.11.4: our own tar, written by pack_template
            tar.extractall(folder, members=members)


@dataclass
class Slot:
    """The kernel's side of a scratch course, made before its student is known: the kernel's working
    folder (the release's extra files), its home, kernelspec and runtime folder, and (``km``) a kernel
    already started, so that the next student's kernel boots while this one's notebook runs."""

    folder: Path
    runtime: Path
    kernel: str
    key: str
    km: object | None = None


_SPARE: Slot | None = None  # this worker's slot for its next student


def _slot_key(task: Task) -> str:
    # a kernel's asyncio objects belong to the thread that started it (a Dask worker could change threads)
    return _sha(task.pack, str(task.settings.memory_gb).encode(), str(task.settings.sandbox).encode(),
                str(threading.get_ident()).encode())


def _scratch_env(folder: Path, runtime: Path) -> dict:
    return dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", MPLBACKEND="Agg", PYTHONUNBUFFERED="1",
                JUPYTER_PATH=str(folder / "jupyter"), JUPYTER_RUNTIME_DIR=str(runtime))


def make_slot(task: Task, start: bool = False) -> Slot:
    """A new slot for ``task``'s assignment; ``start``: start its kernel now (it boots on its own)."""
    from course_tools.gradeexec import probe_file
    from course_tools.sandbox import write_kernelspec

    base = Path(task.scratch_base) if task.scratch_base else Path(tempfile.gettempdir()) / "course-grade"
    (base / "students").mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix="c-", dir=base / "students"))  # one per student and attempt
    _unpack(task.pack, folder, only="extras")
    run = folder / "run"  # the kernel's working folder: the release's extra files, nothing else
    (folder / "extras").rename(run) if (folder / "extras").exists() else run.mkdir()
    (folder / "home").mkdir()
    runtime = Path(tempfile.mkdtemp(prefix="cg-"))  # short: Unix socket paths are limited to 107 bytes
    kernel = write_kernelspec(folder / "jupyter", run, folder / "home", task.settings.memory_gb, probe_file(runtime),
                              sandbox=task.settings.sandbox)
    slot = Slot(folder=folder, runtime=runtime, kernel=kernel, key=_slot_key(task))
    if start:
        from jupyter_client import AsyncKernelManager
        from jupyter_client.kernelspec import KernelSpecManager
        from jupyter_core.utils import run_sync

        km = AsyncKernelManager(kernel_name=kernel, transport="ipc", ip=str(runtime / "k"),
                                connection_file=str(runtime / "kernel.json"),
                                kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(folder / "jupyter" / "kernels")]))
        run_sync(km.start_kernel)(env=with_scripts_on_path(_scratch_env(folder, runtime)), cwd=str(run))
        slot.km = km
        _drop_at_exit()
    return slot


def _kill(km) -> None:
    """Stop a kernel at once (its sandbox dies with it), whatever state it is in."""
    from jupyter_core.utils import run_sync

    process = getattr(getattr(km, "provisioner", None), "process", None)
    with contextlib.suppress(Exception):
        if process is not None and process.poll() is None:
            process.kill()
            process.wait(10)
    with contextlib.suppress(Exception):
        run_sync(km.cleanup_resources)(restart=False)


def drop_slot(slot: Slot | None) -> None:
    if slot is None:
        return
    if slot.km is not None:
        _kill(slot.km)
    shutil.rmtree(slot.runtime, ignore_errors=True)
    shutil.rmtree(slot.folder, ignore_errors=True)


@lru_cache(maxsize=1)
def _drop_at_exit() -> None:
    """When this worker process exits, its unused spare goes too."""
    import atexit
    from multiprocessing import util

    def drop() -> None:
        global _SPARE
        drop_slot(_SPARE)
        _SPARE = None

    util.Finalize(None, drop, exitpriority=100)  # worker processes of a pool exit without atexit
    atexit.register(drop)


def take_slot(task: Task) -> Slot:
    """This worker's spare when it fits the task (same assignment and kernel limits), else a new slot."""
    global _SPARE
    spare, _SPARE = _SPARE, None
    if spare is not None and spare.key == _slot_key(task):
        return spare
    drop_slot(spare)
    return make_slot(task)


def make_scratch(task: Task, slot: Slot) -> Scratch:
    """Lay out the scratch course in ``slot``: gradebook, source, the submission and its config."""
    assignment = task.assignment
    sid = internal_id(task.student)
    folder = slot.folder
    _unpack(task.pack, folder)
    shutil.rmtree(folder / "extras", ignore_errors=True)  # already in run/
    (folder / "submitted" / sid / assignment).mkdir(parents=True)
    nbformat.write(nbformat.from_dict(task.notebook), folder / "submitted" / sid / assignment / f"{assignment}.ipynb")
    (folder / "nbgrader_config.py").write_text(scratch_config(
        folder / "course", folder.resolve(), cell_timeout=task.settings.cell_timeout or NBGRADER_EXECUTE_DEFAULT,
        notebook_timeout=task.settings.notebook_timeout or 3600, kernel_name=slot.kernel, runtime=str(slot.runtime),
        interrupt_grace=task.settings.interrupt_grace, holds=not task.trusted))
    return Scratch(folder=folder, sid=sid, runtime=slot.runtime, env=_scratch_env(folder, slot.runtime))


@dataclass
class ApiResult:
    """What one call of nbgrader's Python API reported (the shape ``_tail`` reads)."""

    returncode: int
    stdout: str
    stderr: str = ""


class GradingTimeout(Exception):
    """The last-resort limit of one nbgrader call (the guarded executor's deadlines come first)."""

    def __init__(self, timeout: float) -> None:
        super().__init__(f"grading exceeded {timeout:.0f} s")
        self.timeout = timeout


@contextlib.contextmanager
def _in_scratch(scratch: Scratch, limit: float):
    """Run nbgrader in this process as its command line would run in the scratch course: its working
    folder, its environment (kernel specs, runtime folder, threads), and a last-resort alarm."""
    saved_env, saved_cwd = dict(os.environ), os.getcwd()
    alarm = threading.current_thread() is threading.main_thread()
    if alarm:
        def expire(signum, frame):
            raise GradingTimeout(limit)

        previous = signal.signal(signal.SIGALRM, expire)
        signal.setitimer(signal.ITIMER_REAL, limit)
    os.environ.clear()
    os.environ.update(with_scripts_on_path(scratch.env))
    os.chdir(scratch.folder)
    try:
        yield
    finally:
        if alarm:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)
        os.chdir(saved_cwd)
        os.environ.clear()
        os.environ.update(saved_env)


def nbgrader_api(scratch: Scratch):
    """nbgrader's Python API on the scratch course, configured by its nbgrader_config.py (loaded as nbgrader does)."""
    import logging

    from nbgrader.apps import NbGraderAPI
    from nbgrader.coursedir import CourseDirectory
    from traitlets.config.loader import PyFileConfigLoader

    config = PyFileConfigLoader("nbgrader_config.py", path=str(scratch.folder)).load_config()
    config.CourseDirectory.root = str(scratch.folder)
    log = logging.getLogger(f"course.nbgrader.{scratch.sid}")
    log.propagate = False                     # what nbgrader logs goes to the result, not the grader's console
    log.handlers = [logging.NullHandler()]
    return NbGraderAPI(coursedir=CourseDirectory(config=config), config=config, log=log)


def _api_call(scratch: Scratch, limit: float, call: str, *args, **kwargs) -> ApiResult:
    import warnings

    with _in_scratch(scratch, limit), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # nbgrader's SQLAlchemy warnings say nothing about the student
        try:
            result = getattr(nbgrader_api(scratch), call)(*args, **kwargs)
        except GradingTimeout:
            raise
        except Exception as error:  # nbgrader's own failure, reported like its command line would
            return ApiResult(1, "", f"{type(error).__name__}: {error}")
    text = "\n".join(filter(None, [result.get("log", ""), result.get("error", "")]))
    if "GradingTimeout" in text:   # the alarm fired inside nbgrader, which caught it
        raise GradingTimeout(limit)
    return ApiResult(0 if result.get("success") else 1, text)


def autograde(task: Task, scratch: Scratch) -> ApiResult:
    """nbgrader autograde of the one student (its Python API, in this worker), within the notebook's limit plus a margin."""
    limit = (task.settings.notebook_timeout or 3600) + 180
    return _api_call(scratch, limit, "autograde", task.assignment, scratch.sid, force=True, create=True)


def score(row: GradeRow, scratch: Scratch, assignment: str) -> None:
    """Score and failed tests from the scratch gradebook (nbgrader's rule, cell by cell)."""
    from nbgrader.api import Gradebook, MissingEntry

    db = scratch.folder / "gradebook.db"
    if not db.exists():
        return
    with Gradebook(f"sqlite:///{db}") as gb:
        try:
            submission = gb.find_submission(assignment, scratch.sid)
        except MissingEntry:
            return
        row.score = float(submission.score)
        row.failed_tests = sorted(
            grade.name for notebook in submission.notebooks for grade in notebook.grades
            if grade.auto_score is None or grade.auto_score < grade.max_score)


def cell_scores(scratch: Scratch, assignment: str) -> bytes:
    """Each graded cell's auto score from the scratch gradebook, {notebook: {grade id: score}}, as JSON."""
    from nbgrader.api import Gradebook, MissingEntry

    scores: dict[str, dict[str, float | None]] = {}
    db = scratch.folder / "gradebook.db"
    if db.exists():
        with Gradebook(f"sqlite:///{db}") as gb:
            try:
                submission = gb.find_submission(assignment, scratch.sid)
            except MissingEntry:
                submission = None
            for notebook in submission.notebooks if submission else []:
                scores[notebook.name] = {grade.name: grade.auto_score for grade in notebook.grades}
    return json.dumps(scores, sort_keys=True).encode()


def note_guards(row: GradeRow, nb: nbformat.NotebookNode) -> None:
    """Add what the guards did (kernel deaths, stuck cells, deadline, review holds) to the row.

    Read from the record the grader's executor keeps in the notebook's metadata, which no cell can
    write: a cell that prints "kernel died in cell ..." or raises an error named ``KernelDied`` or
    ``KeyboardInterrupt`` changes nothing here."""
    guards = nb.get("metadata", {}).get("course_guards") or {}
    died, stuck = guards.get("died", []), guards.get("stuck", [])
    late, timeouts, abandoned = guards.get("late", []), guards.get("timeout", []), guards.get("abandoned", [])
    notes = []
    hold = nb.get("metadata", {}).get("course_hold")
    if isinstance(hold, dict) and hold.get("tests"):
        notes.append(f"{hold['tests']} test(s) held for review (scored 0 until an instructor looks): cell "
                     f"{hold.get('cell')} {hold.get('reason')}")
        row.status = "review"
    if died:
        notes.append(f"kernel died in cell {', '.join(died)} (skipped; later cells ran in a fresh kernel)")
        row.status = "review"
    if abandoned:
        notes.append(f"the kernel died too many times: {len(abandoned)} cell(s) not run, from {abandoned[0]}")
    if stuck:
        notes.append(f"cell {', '.join(stuck)} did not stop when interrupted (its kernel was stopped; "
                     f"earlier results kept)")
    if timeouts:
        notes.append(f"cell time limit hit in {', '.join(dict.fromkeys(timeouts))}")
    if late:
        notes.append(f"notebook time limit reached: {len(late)} cell(s) stopped or not run, from {late[0]}")
    capped = nb.get("metadata", {}).get("course_output_capped")
    if isinstance(capped, dict):
        notes.append(f"output capped: {capped.get('characters', 0):,} characters beyond the notebook's "
                     f"{capped.get('limit', 0):,} were removed")
    if notes:
        row.reason = "; ".join(filter(None, [*notes, row.reason]))


def feedback(task: Task, row: GradeRow, scratch: Scratch) -> dict[str, bytes]:
    """Generate the feedback HTML; return its files (name -> bytes)."""
    assignment = task.assignment
    result = _api_call(scratch, 300, "generate_feedback", assignment, scratch.sid, force=True)
    pages = {html.name: html.read_bytes()
             for html in (scratch.folder / "feedback" / scratch.sid / assignment).glob("*.html")}
    if result.returncode != 0:
        row.flags.append(f"feedback not generated: {_tail(result)}")
    return pages


def _one_thread_per_worker() -> str | None:
    """Why this Dask worker cannot grade (it runs tasks in several threads at once), or None."""
    if "distributed" not in sys.modules:  # a Dask worker has it imported; our own processes need not import it
        return None
    try:
        from distributed import get_worker

        threads = get_worker().state.nthreads
    except (ImportError, ValueError, AttributeError):
        return None  # not in a Dask worker: a process of our own pool, one task at a time
    if threads > 1:
        return (f"this Dask worker runs {threads} tasks at once; grading changes the process's folder and "
                f"environment, so start workers with `--nthreads 1` (and `--nworkers N` for N at once)")
    return None


def run_task(task: Task) -> Outcome:
    """Grade one prepared submission in a scratch course of its own (a worker's step); never raises."""
    global _SPARE
    from course_tools import gradeexec
    from course_tools.sandbox import bwrap_path

    start = time.perf_counter()
    assignment = task.assignment
    row = replace(task.row, flags=list(task.row.flags), failed_tests=[])
    files: dict[str, dict[str, bytes]] = {}
    slot = None
    try:
        refused = _one_thread_per_worker()
        if refused:
            raise RuntimeError(refused)
        if task.settings.sandbox and bwrap_path() is None:  # a Dask worker on a machine without bubblewrap
            from course_tools.sandbox import NO_SANDBOX

            raise RuntimeError(f"this worker cannot grade: {NO_SANDBOX}")
        slot = take_slot(task)
        scratch = make_scratch(task, slot)
        if task.prestart:  # a fresh kernel for the next student boots now; never one that ran a student
            _SPARE = make_slot(task, start=True)
        gradeexec.SPARE_KERNEL = slot.km
        row.sandboxed = task.settings.sandbox  # the kernel refuses to start unsandboxed unless told --no-sandbox
        result = autograde(task, scratch)
        gradeexec.SPARE_KERNEL = None
        score(row, scratch, assignment)
        graded = scratch.graded / assignment / f"{assignment}.ipynb"
        if result.returncode != 0 or not graded.exists():
            row.status = "error"
            row.reason = "; ".join(filter(None, [f"autograde failed: {_tail(result)}", row.reason]))
        else:
            note_guards(row, nbformat.read(graded, as_version=4))
            files["graded"] = {graded.name: graded.read_bytes()}
            files["feedback"] = feedback(task, row, scratch)
            files["scores"] = {"scores.json": cell_scores(scratch, assignment)}  # for course grade --gradebook
        if task.trusted and row.flags:
            row.reason = "; ".join(filter(None, [row.reason, "holds lifted by the instructor (--trust)"]))
    except Exception as error:  # one broken submission must never stop the others
        row.status = "error"
        row.reason = (f"grading exceeded {error.timeout:.0f} s"
                      if isinstance(error, (subprocess.TimeoutExpired, GradingTimeout))
                      else f"{type(error).__name__}: {error}"[:400])
    finally:
        gradeexec.SPARE_KERNEL = None
        drop_slot(slot)  # its kernel (shut down already, unless grading failed first) and its folders
    row.seconds += time.perf_counter() - start
    return Outcome(row=row, files=files)


# --------------------------------------------------------------------------- the asking side of one student


def _conclude(row: GradeRow) -> GradeRow:
    """The row's last words: a reason, review when flagged, whether it was sandboxed."""
    if not row.reason:
        row.reason = "all tests pass" if not row.failed_tests else f"{len(row.failed_tests)} test(s) fail"
    if row.status == "graded" and row.flags:
        row.status = "review"
    if not row.sandboxed and row.status in ("graded", "review"):
        row.reason += "; not sandboxed"
    return row


def make_task(job: Job, pack: bytes, scratch_base: str | None) -> Task | GradeRow:
    """Prepare one student here (reading their folder); a finished row when there is nothing to run."""
    start = time.perf_counter()
    assignment = job.template.assignment
    row = GradeRow(student=job.student, assignment=assignment, max_score=job.template.max_score)
    try:
        large = oversized_files(job.folder) if job.folder is not None else []
        notebook = prepare(job, row)
        if large:
            row.reason = "; ".join(filter(None, [row.reason, f"{len(large)} file(s) over "
                                                 f"{MAX_FILE_BYTES // 2**20} MiB not read: {', '.join(large[:3])}"]))
    except BadSubmission as error:
        row.status, row.reason = "invalid", str(error)
    except Exception as error:  # a reader's bug: this student's row says so, the others go on
        row.status, row.reason = "error", f"{type(error).__name__}: {error}"[:400]
    row.seconds = time.perf_counter() - start
    if row.status in ("invalid", "error"):
        return _conclude(row)
    return Task(student=job.student, assignment=assignment, notebook=json.loads(json.dumps(notebook)), row=row,
                pack=pack, settings=job.settings, trusted=job.trusted, scratch_base=scratch_base)


def _result_path(work: Path, student: str) -> Path:
    return work / "results" / f"{internal_id(student)}.json"


def keep(job: Job, outcome: Outcome) -> GradeRow:
    """Write what a worker sent back under OUT and remember the row (except an ``error``, always regraded)."""
    assignment = job.template.assignment
    for kind in ("graded", "feedback", "scores"):
        for name, data in outcome.files.get(kind, {}).items():
            dest = job.out / kind / job.student / assignment / Path(name).name
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(data)
    row = _conclude(outcome.row)
    if row.status != "error":
        _write_atomic(_result_path(job.work, job.student),
                      json.dumps({"digest": job.digest, "student": job.student, "row": asdict(row)}))
    return row


def _worker_init() -> None:
    """A grading worker: killed with the run that started it, Ctrl-C handled by that run."""
    die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)


# --------------------------------------------------------------------------- workers: local processes or Dask

ATTEMPTS = 3  # a task whose worker died is run again, at most this many times in all


class Workers:
    """Where tasks run: ``jobs`` local worker processes, or the Dask cluster at ``scheduler``.

    Both are used through the same ``concurrent.futures`` interface (Dask's ``Client.get_executor``),
    so ``course grade`` has one code path; only ``start`` and ``stop`` differ.
    """

    def __init__(self, jobs: int, scheduler: str | None = None) -> None:
        self.jobs, self.scheduler = jobs, scheduler
        self.client = None
        self.executor = None

    def start(self):
        if self.scheduler:
            try:
                from distributed import Client
            except ImportError:
                raise RuntimeError("--scheduler needs Dask: pip install 'dask[distributed]' "
                                   "(in the course's environment, on every worker too)") from None
            self.client = Client(self.scheduler, timeout="30s", set_as_default=False)
            self.executor = self.client.get_executor(pure=False)
        else:
            import multiprocessing

            import nbgrader.apps  # noqa: F401  (imported here, inherited by every fork)

            self.executor = ProcessPoolExecutor(max_workers=self.jobs, initializer=_worker_init,
                                                mp_context=multiprocessing.get_context("fork"))
        return self.executor

    def stop(self, abort: bool = False) -> None:
        if self.executor is not None:
            if abort and self.client is None:
                for process in list(getattr(self.executor, "_processes", {}).values()):
                    process.kill()
            if self.client is None:
                self.executor.shutdown(wait=not abort, cancel_futures=True)
            else:
                self.executor.shutdown(wait=not abort)  # Dask's: cancels what is left when not waiting
        if self.client is not None:
            self.client.close()
        self.client = self.executor = None

    @property
    def spare_cores(self) -> bool:
        """Whether every machine has a core beyond its workers: then each worker starts its next
        student's kernel while the current one runs. With a worker per core a spare kernel has no
        core to boot on, so it gains nothing (measured: 78.4 s with, 78.7 s without, for 8 students
        on 2 cores) and only doubles the kernels' memory."""
        if self.client is None:
            return self.jobs < (os.cpu_count() or 1)
        try:
            cores = self.client.run(os.cpu_count)
            hosts: dict[str, list[str]] = {}
            for address, info in self.client.scheduler_info()["workers"].items():
                hosts.setdefault(info.get("host", address), []).append(address)
            return all(len(found) < min(cores.get(a) or 1 for a in found) for found in hosts.values())
        except Exception:  # a cluster that will not say: no spare kernels
            return False

    @property
    def width(self) -> int:
        """How many tasks run at once."""
        if self.client is not None:
            return max(1, sum(self.client.nthreads().values()))
        return self.jobs

    @property
    def description(self) -> str:
        if self.scheduler:
            return f"the Dask cluster at {self.scheduler}"
        return f"{self.jobs} worker process{'es' if self.jobs != 1 else ''}"


def run_all(tasks: dict[str, Task], workers: Workers, done) -> None:
    """Run every task; call ``done(student, outcome)`` once per student, in the order they finish.

    A task whose worker died (killed, out of memory, its machine gone) is run again on a fresh
    worker, at most ``ATTEMPTS`` times in all; nothing of a failed attempt is kept.
    """
    from concurrent.futures import as_completed

    failures: dict[str, list[str]] = {}
    pending = dict(tasks)
    while pending:
        executor = workers.start()
        last = len(pending) - workers.width  # the last tasks to start need no spare kernel after them
        try:
            spare = workers.spare_cores
            futures = {executor.submit(run_task, replace(task, prestart=task.prestart and spare and i < last)): student
                       for i, (student, task) in enumerate(pending.items())}
            for future in as_completed(futures):
                student = futures[future]
                try:
                    outcome = future.result()
                except Exception as error:  # the worker, not the student: try again elsewhere
                    failures.setdefault(student, []).append(f"{type(error).__name__}: {error}"[:200])
                    if len(failures[student]) < ATTEMPTS:
                        continue
                    task = pending[student]
                    row = replace(task.row, status="error", reason=f"the grading worker failed {ATTEMPTS} "
                                  f"times: {failures[student][-1]}")
                    outcome = Outcome(row=row)
                del pending[student]
                done(student, outcome)
        except BaseException:
            workers.stop(abort=True)
            raise
        workers.stop()


def _solution_runtime(template: Template, work: Path, settings: Settings) -> float:
    """Grade the instructor's own solution once (cached) and return its runtime in seconds."""
    cache = work / "solution.json"
    if cache.exists():
        stored = json.loads(cache.read_text())
        if stored.get("digest") == template.digest and stored.get("settings") == asdict(settings):
            return float(stored["seconds"])
    probe = replace(settings, notebook_timeout=settings.notebook_timeout or 3600)
    job = Job(student="_solution", folder=None, template=template, work=work, out=work / "solution-feedback",
              settings=probe, notebook=json.loads(json.dumps(solved_release(template))))
    task = make_task(job, pack_template(template), str(work))
    outcomes: list[Outcome] = []
    if isinstance(task, Task):
        run_all({job.student: task}, Workers(1), lambda _student, outcome: outcomes.append(outcome))
    row = _conclude(outcomes[0].row) if outcomes else task
    if row.score < template.max_score or row.status != "graded":
        raise RuntimeError(f"the solution of {template.assignment} scores {row.score:g}/{template.max_score:g} "
                           f"when graded ({row.status}: {row.reason}); fix solutions/ (or the grader) before "
                           f"grading students")
    _write_atomic(cache, json.dumps({"digest": template.digest, "settings": asdict(settings), "seconds": row.seconds}))
    return row.seconds


def find_submissions(submissions: Path, assignment: str) -> dict[str, Path]:
    """Return {student: submitted assignment folder} for every student folder under SUBMISSIONS.

    Every entry that is a folder (or a link, which then gets an ``invalid`` row) is a student,
    whatever its name; hidden entries (``.git``, ``.ipynb_checkpoints``) are not.
    """
    return {p.name: p / assignment for p in sorted(submissions.iterdir())
            if (p.is_dir() or p.is_symlink()) and not p.name.startswith(".")}


def check_layout(submissions: Path, assignment: str | None) -> None:
    """Fail fast, naming the expected layout and what was found, unless some student folder holds
    an assignment folder."""
    if not submissions.is_dir():
        raise LayoutError(f"no submissions folder at {submissions} (expected {LAYOUT})")
    entries = [p for p in sorted(submissions.iterdir()) if not p.name.startswith(".")]
    students = [p for p in entries if p.is_dir() and not p.is_symlink()]
    wanted = [assignment] if assignment else None
    good = [s for s in students if any(d.is_dir() and (wanted is None or d.name in wanted) for d in s.iterdir())]
    if good or any(p.is_symlink() for p in entries):
        return
    found: list[str] = []
    notebooks = [p.name for p in entries if p.suffix == ".ipynb"]
    if notebooks:
        found.append(f"{len(notebooks)} notebook(s) directly in it ({', '.join(notebooks[:3])})")
    flat = [f"{s.name}/{n.name}" for s in students for n in sorted(s.glob("*.ipynb"))]
    if flat:
        found.append(f"notebooks without an assignment folder ({', '.join(flat[:3])})")
    others = sorted({d.name for s in students for d in s.iterdir() if d.is_dir()})
    if others and assignment:
        found.append(f"assignment folders named {', '.join(others[:5])}, none named {assignment}")
    if not entries:
        found.append("nothing: the folder is empty")
    elif not found:
        found.append(f"{len(entries)} entr{'y' if len(entries) == 1 else 'ies'} and no notebook")
    raise LayoutError(f"{submissions} is not in nbgrader's layout {LAYOUT}: found {'; '.join(found)}")


MAX_FILE_BYTES = 100 * 2**20  # files above this in a student's folder are not read (named in the row)


def oversized_files(folder: Path) -> list[str]:
    """Files under a student's folder too large to read (``MAX_FILE_BYTES``), with their sizes."""
    base = folder.parent
    found = []
    if os.path.islink(base) or not base.is_dir():
        return found
    for here, _dirs, files in os.walk(base, followlinks=False):
        for name in sorted(files):
            path = os.path.join(here, name)
            with contextlib.suppress(OSError):
                size = os.lstat(path).st_size
                if size > MAX_FILE_BYTES:
                    found.append(f"{os.path.relpath(path, base)} ({size / 2**20:,.0f} MiB)")
    return found


def _file_digest(path: str) -> bytes:
    """SHA-256 of a file read in 1 MiB blocks (never whole); a file over ``MAX_FILE_BYTES`` is hashed
    by its size and time only, unread."""
    info = os.lstat(path)
    if info.st_size > MAX_FILE_BYTES:
        return f"large:{info.st_size}:{info.st_mtime_ns}".encode()
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.digest()


def _submission_digest(key: str, folder: Path) -> str:
    """Hash of every file and link under a student's folder (links are not followed; files are read
    in blocks, and one over ``MAX_FILE_BYTES`` not at all)."""
    parts = [key.encode()]
    base = folder.parent
    if os.path.islink(base) or not base.exists():
        return _sha(*parts, os.fsencode(os.readlink(base)) if os.path.islink(base) else b"missing")
    for here, dirs, files in os.walk(base, followlinks=False):
        dirs.sort()
        for name in sorted(files + [d for d in dirs if os.path.islink(os.path.join(here, d))]):
            path = os.path.join(here, name)
            rel = os.fsencode(os.path.relpath(path, base))
            if os.path.islink(path):
                parts.append(b"link:" + rel + b"->" + os.fsencode(os.readlink(path)))
            elif os.path.isfile(path):
                parts.append(rel + b"\0" + _file_digest(path))
    return _sha(*parts)


def grade(root: Path, submissions: Path, assignment: str | None = None, out: Path | None = None,
          jobs: int | None = None, settings: Settings | None = None, force: bool = False,
          progress: bool = False, trusted: set[str] | frozenset[str] = frozenset(),
          scheduler: str | None = None) -> list[GradeRow]:
    """Grade every student's submission of ``assignment``; write grades.csv and feedback; return the rows.

    ``jobs`` local worker processes grade at once, or, with ``scheduler`` (a Dask scheduler's
    address), the workers of that Dask cluster; results and feedback come back here either way.
    """
    settings = settings or Settings()
    if settings.sandbox:
        from course_tools.sandbox import NO_SANDBOX, bwrap_path

        if scheduler is None and bwrap_path() is None:
            raise NoSandbox(NO_SANDBOX)
    root = Path(root).resolve()
    submissions = Path(submissions).absolute()
    check_layout(submissions, assignment)
    known = list_assignments(root)
    if assignment is None:
        present = {p.name for s in submissions.iterdir() if s.is_dir() and not s.is_symlink()
                   for p in s.iterdir() if p.is_dir()}
        candidates = sorted(present & set(known))
        if len(candidates) != 1:
            raise ValueError(f"say which assignment with --assignment; submissions hold {sorted(present)}")
        assignment = candidates[0]
    if assignment not in known:
        raise ValueError(f"unknown assignment {assignment!r}; solutions/ has {known}")
    check_layout(submissions, assignment)
    out = Path(out or root / "grading" / assignment).resolve()
    work = out / ".work"
    work.mkdir(parents=True, exist_ok=True)
    if settings.cell_timeout is None:
        settings = replace(settings, cell_timeout=course_cell_timeout(root))
    if progress:
        print(f"generating {assignment} from solutions/ ...", flush=True)
    template = make_template(root, assignment, work)
    if settings.notebook_timeout is None:
        if progress:
            print("grading the solution once to set the notebook time limit ...", flush=True)
        seconds = _solution_runtime(template, work, settings)
        settings = replace(settings, notebook_timeout=max(120, math.ceil(settings.runtime_factor * seconds) + 60))
    _write_atomic(work / "settings.json", json.dumps(asdict(settings)))
    copy_feedback_mathjax(out / "feedback")
    found = find_submissions(submissions, assignment)
    key = _sha(template.digest.encode(), json.dumps(asdict(settings), sort_keys=True).encode())
    rows: dict[str, GradeRow] = {}
    todo: list[Job] = []
    for student, folder in found.items():
        trust = student in trusted
        digest = _submission_digest(f"{key}:{trust}", folder)
        done = _result_path(work, student)
        if not force and done.exists():
            stored = json.loads(done.read_text())
            row = stored.get("row", {})
            # a row is served again only when graded under the same conditions: the sandbox is in the
            # key (settings), and the row itself must say it ran as this run would run it
            if stored.get("digest") == digest and row.get("status") != "error" \
                    and row.get("sandboxed", False) == settings.sandbox:
                rows[student] = GradeRow(**stored["row"])
                continue
        todo.append(Job(student=student, folder=folder, template=template, work=work, out=out,
                        settings=settings, trusted=trust, digest=digest))
    workers = Workers(max(1, min(len(todo), jobs or os.cpu_count() or 1)), scheduler)
    if progress:
        print(f"{len(found)} student(s): {len(rows)} already graded, {len(todo)} to grade on "
              f"{workers.description}", flush=True)
    if todo:
        pack = pack_template(template)
        jobs_of = {job.student: job for job in todo}
        tasks: dict[str, Task] = {}
        meter = Progress(len(found), len(rows), enabled=progress)
        for job in todo:  # read and check each submission here: a worker gets plain data only
            item = make_task(job, pack, None if scheduler else str(work))
            if isinstance(item, Task):
                tasks[job.student] = item
            else:
                rows[job.student] = keep(job, Outcome(row=item))
                meter.step(rows[job.student], ran=False)

        def done(student: str, outcome: Outcome) -> None:
            rows[student] = keep(jobs_of[student], outcome)
            meter.step(rows[student])

        try:
            run_all(tasks, workers, done)
        finally:
            meter.close()
        shutil.rmtree(work / "students", ignore_errors=True)  # what attempts on killed workers left
    ordered = [rows[student] for student in sorted(found)]
    tmp_csv = out / "grades.csv.tmp"
    with tmp_csv.open("w", newline="", encoding="utf-8", errors="surrogateescape") as handle:
        writer = csv.DictWriter(handle, fieldnames=FIELDS)
        writer.writeheader()
        for row in ordered:
            writer.writerow(row.as_csv())
    os.replace(tmp_csv, out / "grades.csv")
    return ordered


def duration(seconds: float) -> str:
    """A duration as a person reads it: 45 s, 3 min 20 s, 2 h 05 min."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds // 60 % 60:02d} min"


class Progress:
    """Students done / total and the time left: a bar on a terminal, a line per student in a log."""

    def __init__(self, total: int, done: int, enabled: bool = True) -> None:
        self.total, self.done, self.enabled = total, done, enabled
        self.graded, self.start = 0, time.perf_counter()
        self.bar = None
        if enabled and sys.stdout.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=done, unit="student", desc="grading", file=sys.stdout,
                            dynamic_ncols=True, smoothing=0.1)

    def left(self) -> str:
        if not self.graded:
            return "time left not known yet"
        elapsed = time.perf_counter() - self.start
        return f"about {duration(elapsed / self.graded * (self.total - self.done))} left"

    def step(self, row: GradeRow, ran: bool = True) -> None:
        """One more row; ``ran``: a worker graded it (rows found invalid here take no time)."""
        self.done += 1
        self.graded += ran
        if not self.enabled:
            return
        line = (f"  [{self.done}/{self.total}] {printable(row.student)}: {row.score:g}/{row.max_score:g} "
                f"{row.status} ({row.seconds:.0f} s)")
        if self.bar is not None:
            self.bar.write(line)
            self.bar.update(1)
        else:
            print(f"{line}; {self.done}/{self.total} done, {self.left()}", flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        elapsed = time.perf_counter() - self.start
        if self.enabled and self.graded:
            print(f"ran {self.graded} submission(s) in {duration(elapsed)}: "
                  f"{60 * self.graded / max(elapsed, 1e-9):.1f} per minute", flush=True)


def summary(rows: list[GradeRow]) -> str:
    """Format the grade rows as a table for the terminal."""
    if not rows:
        return "no submissions found"
    names = [printable(r.student) for r in rows]
    width = max(7, *(min(len(n), 40) for n in names))
    lines = [f"{'student':<{width}}  {'score':>9}  {'status':<7}  reason"]
    for name, r in zip(names, rows):
        score_text = f"{r.score:g}/{r.max_score:g}"
        lines.append(f"{name:<{width}}  {score_text:>9}  {printable(r.status):<7}  {printable(r.reason)}")
        lines += [f"{'':<{width}}  {'':>9}  {'':<7}  flag: {printable(flag)}" for flag in r.flags]
    review = sum(r.needs_review for r in rows)
    lines.append(f"{len(rows)} submission(s), {review} need manual review")
    return "\n".join(lines)
