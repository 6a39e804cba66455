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
import json
import math
import os
import shutil
import signal
import subprocess
import sys
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

FIELDS = ["student", "assignment", "score", "max_score", "status", "reason", "flags",
          "failed_tests", "sandboxed", "seconds"]
LAYOUT = "SUBMISSIONS/<student>/<assignment>/<notebook>.ipynb"
NBGRADER_EXECUTE_DEFAULT = 30  # nbgrader's own Execute.timeout


class LayoutError(ValueError):
    """The submissions folder is not in nbgrader's layout; the message says what was found."""


@dataclass(frozen=True)
class Settings:
    """Limits for one grading run (``None``: taken from the course or the solution's runtime)."""

    cell_timeout: int | None = None  # None: the repository's Execute.timeout
    notebook_timeout: int | None = None  # None: a multiple of the solution's own runtime
    memory_gb: float = 4.0
    runtime_factor: float = 3.0
    interrupt_grace: int = 10


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


def printable(name: str) -> str:
    """A student name as the terminal can show it (odd bytes escaped)."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace").replace("\n", "\\n")


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


def _die_with_parent() -> None:
    """In a child process: be killed when the process that started it dies (Linux)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def nbgrader_cmd(args: list[str], cwd: Path, timeout: float | None, env: dict) -> subprocess.CompletedProcess:
    """Run one nbgrader sub-command in a scratch course; it dies with the worker that started it."""
    return subprocess.run([sys.executable, "-m", "nbgrader", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env=with_scripts_on_path(env), preexec_fn=_die_with_parent)


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
        '"course_tools.feedback.SummariseTests", "nbconvert.preprocessors.CSSHTMLHeaderPreprocessor"]',
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


def make_template(root: Path, assignment: str, work: Path) -> Template:
    """Generate the assignment (gradebook with every test) from solutions/ into ``work/template``."""
    folder = work / "template"
    if folder.exists():
        shutil.rmtree(folder)
    source = root / "solutions" / assignment
    shutil.copytree(source, folder / "source" / assignment, symlinks=True,
                    ignore=shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__"))
    (folder / "nbgrader_config.py").write_text(scratch_config(
        root, folder.resolve(), cell_timeout=30, notebook_timeout=60, kernel_name="python3", runtime="/tmp"))
    result = nbgrader_cmd(["generate_assignment", assignment, "--force"], cwd=folder, timeout=600,
                          env=dict(os.environ))
    if result.returncode != 0:
        raise RuntimeError(f"could not generate {assignment} from solutions/: {_tail(result)}")
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{folder / 'gradebook.db'}") as gb:
        max_score = float(gb.find_assignment(assignment).max_score)
    notebook = f"{assignment}.ipynb"
    extras = tuple(p for p in sorted((folder / "release" / assignment).rglob("*")) if p.is_file() and p.name != notebook)
    return Template(root=Path(root), folder=folder, assignment=assignment, max_score=max_score, extras=extras,
                    digest=_sha((source / notebook).read_bytes(), (root / "nbgrader_config.py").read_bytes()))


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
    """Everything a worker needs to grade one student (picklable)."""

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
        rebuilt = reconstruct(load_submission(path), job.template.release, assignment)
    except BadSubmission:
        raise
    except (TypeError, AttributeError, KeyError, ValueError, RecursionError) as error:
        raise BadSubmission(f"not a valid notebook: {type(error).__name__}") from None
    row.reason = "; ".join(rebuilt.notes)
    flags = scan_notebook(rebuilt.notebook, rebuilt.student_cells)
    row.flags += flags
    mark_holds(rebuilt.notebook, flags)
    if rebuilt.answered == 0:
        row.reason = "; ".join(filter(None, ["no exercise answered", row.reason]))
    return rebuilt.notebook


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


def make_scratch(job: Job, notebook: nbformat.NotebookNode) -> Scratch:
    """Lay out the scratch course: gradebook, source, the submission, the kernel's folders and config."""
    from course_tools.sandbox import write_kernelspec

    template, assignment = job.template, job.template.assignment
    sid = internal_id(job.student)
    folder = job.work / "students" / sid
    if folder.exists():
        shutil.rmtree(folder)
    (folder / "submitted" / sid / assignment).mkdir(parents=True)
    shutil.copy(template.folder / "gradebook.db", folder / "gradebook.db")
    shutil.copytree(template.folder / "source", folder / "source", symlinks=True)
    nbformat.write(notebook, folder / "submitted" / sid / assignment / f"{assignment}.ipynb")
    run = folder / "run"  # the kernel's working folder: the release's extra files, nothing else
    run.mkdir()
    for extra in template.extras:
        target = run / extra.relative_to(template.folder / "release" / assignment)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(extra, target)
    (folder / "home").mkdir()
    kernel = write_kernelspec(folder / "jupyter", run, folder / "home", job.settings.memory_gb)
    runtime = Path(tempfile.mkdtemp(prefix="cg-"))  # short: Unix socket paths are limited to 107 bytes
    (folder / "nbgrader_config.py").write_text(scratch_config(
        template.root, folder.resolve(), cell_timeout=job.settings.cell_timeout or NBGRADER_EXECUTE_DEFAULT,
        notebook_timeout=job.settings.notebook_timeout or 3600, kernel_name=kernel, runtime=str(runtime),
        interrupt_grace=job.settings.interrupt_grace, holds=not job.trusted))
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", MPLBACKEND="Agg", PYTHONUNBUFFERED="1",
               JUPYTER_PATH=str(folder / "jupyter"), JUPYTER_RUNTIME_DIR=str(runtime))
    return Scratch(folder=folder, sid=sid, runtime=runtime, env=env)


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
    with _in_scratch(scratch, limit):
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


def autograde(job: Job, scratch: Scratch) -> ApiResult:
    """nbgrader autograde of the one student (its Python API, in this worker), within the notebook's limit plus a margin."""
    limit = (job.settings.notebook_timeout or 3600) + 180
    return _api_call(scratch, limit, "autograde", job.template.assignment, scratch.sid, force=True, create=True)


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


def note_guards(row: GradeRow, nb: nbformat.NotebookNode) -> None:
    """Add what the guards did (kernel deaths, stuck cells, deadline, review holds) to the row."""
    from course_tools.gradeexec import (
        CELL_STUCK,
        KERNEL_DIED,
        NOTEBOOK_TIMEOUT,
        REVIEW_HOLD,
    )

    died, stuck, late, timeouts, held = [], [], [], [], []
    for cell in nb.cells:
        key = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id") or cell.get("id")
        for output in cell.get("outputs", []):
            name = output.get("ename")
            if name == KERNEL_DIED and "not run" not in output.get("evalue", ""):
                died.append(key)
            elif name == CELL_STUCK and "did not stop" in output.get("evalue", ""):
                stuck.append(key)
            elif name == NOTEBOOK_TIMEOUT:
                late.append(key)
            elif name == REVIEW_HOLD:
                held.append(key)
            elif name == "KeyboardInterrupt" or name == CELL_STUCK:
                timeouts.append(key)
    notes = []
    hold = nb.get("metadata", {}).get("course_hold")
    if held and isinstance(hold, dict):
        notes.append(f"{len(held)} test(s) held for review (scored 0 until an instructor looks): cell "
                     f"{hold.get('cell')} {hold.get('reason')}")
        row.status = "review"
    if died:
        notes.append(f"kernel died in cell {', '.join(died)} (skipped; later cells ran in a fresh kernel)")
        row.status = "review"
    if stuck:
        notes.append(f"cell {', '.join(stuck)} did not stop when interrupted (its kernel was stopped; "
                     f"earlier results kept)")
    if timeouts:
        notes.append(f"cell time limit hit in {', '.join(dict.fromkeys(timeouts))}")
    if late:
        notes.append(f"notebook time limit reached: {len(late)} cell(s) not run, from {late[0]}")
    if notes:
        row.reason = "; ".join(filter(None, [*notes, row.reason]))


def feedback(job: Job, row: GradeRow, scratch: Scratch) -> None:
    """Generate the feedback HTML and copy it, and the graded notebook, to OUT."""
    assignment = job.template.assignment
    result = _api_call(scratch, 300, "generate_feedback", assignment, scratch.sid, force=True)
    for html in (scratch.folder / "feedback" / scratch.sid / assignment).glob("*.html"):
        dest = job.out / "feedback" / job.student / assignment / html.name
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(html, dest)
    if result.returncode != 0:
        row.flags.append(f"feedback not generated: {_tail(result)}")


def grade_one(job: Job) -> GradeRow:
    """Grade one submission in its own scratch course, then remove the scratch; never raises."""
    from course_tools.sandbox import bwrap_path

    start = time.perf_counter()
    assignment = job.template.assignment
    row = GradeRow(student=job.student, assignment=assignment, max_score=job.template.max_score)
    scratch = None
    try:
        notebook = prepare(job, row)
        scratch = make_scratch(job, notebook)
        row.sandboxed = bwrap_path() is not None
        result = autograde(job, scratch)
        score(row, scratch, assignment)
        graded = scratch.graded / assignment / f"{assignment}.ipynb"
        if result.returncode != 0 or not graded.exists():
            row.status = "error"
            row.reason = "; ".join(filter(None, [f"autograde failed: {_tail(result)}", row.reason]))
        else:
            note_guards(row, nbformat.read(graded, as_version=4))
            keep = job.out / "graded" / job.student / assignment / graded.name
            keep.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(graded, keep)
            feedback(job, row, scratch)
        if job.trusted and row.flags:
            row.reason = "; ".join(filter(None, [row.reason, "holds lifted by the instructor (--trust)"]))
    except BadSubmission as error:
        row.status, row.reason = "invalid", str(error)
    except Exception as error:  # one broken submission must never stop the others
        row.status = "error"
        row.reason = (f"grading exceeded {error.timeout:.0f} s"
                      if isinstance(error, (subprocess.TimeoutExpired, GradingTimeout))
                      else f"{type(error).__name__}: {error}"[:400])
    finally:
        if scratch is not None:
            shutil.rmtree(scratch.runtime, ignore_errors=True)
            shutil.rmtree(scratch.folder, ignore_errors=True)
    if not row.reason:
        row.reason = "all tests pass" if not row.failed_tests else f"{len(row.failed_tests)} test(s) fail"
    if row.status == "graded" and row.flags:
        row.status = "review"
    if not row.sandboxed and row.status in ("graded", "review"):
        row.reason += "; not sandboxed"
    row.seconds = time.perf_counter() - start
    return row


def _result_path(work: Path, student: str) -> Path:
    return work / "results" / f"{internal_id(student)}.json"


def grade_and_remember(job: Job) -> GradeRow:
    """Grade one student and remember the row (except an ``error``, which is always regraded)."""
    row = grade_one(job)
    if row.status != "error":
        _write_atomic(_result_path(job.work, job.student),
                      json.dumps({"digest": job.digest, "student": job.student, "row": asdict(row)}))
    return row


def _worker_init() -> None:
    """A grading worker: killed with the run that started it, Ctrl-C handled by that run."""
    _die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)


# --------------------------------------------------------------------------- the run


def _pool(workers: int) -> ProcessPoolExecutor:
    """Worker processes forked from this one, with nbgrader already imported (once, not per student)."""
    import multiprocessing

    import nbgrader.apps  # noqa: F401  (imported here, inherited by every fork)

    return ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("fork"),
                               initializer=_worker_init)


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
    with _pool(1) as pool:
        row = pool.submit(grade_one, job).result()
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


def _submission_digest(key: str, folder: Path) -> str:
    """Hash of every file and link under a student's folder (links are not followed)."""
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
                with open(path, "rb") as handle:
                    parts.append(rel + b"\0" + handle.read())
    return _sha(*parts)


def grade(root: Path, submissions: Path, assignment: str | None = None, out: Path | None = None,
          jobs: int | None = None, settings: Settings | None = None, force: bool = False,
          progress: bool = False, trusted: set[str] | frozenset[str] = frozenset()) -> list[GradeRow]:
    """Grade every student's submission of ``assignment``; write grades.csv and feedback; return the rows."""
    settings = settings or Settings()
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
            if stored.get("digest") == digest and stored.get("row", {}).get("status") != "error":
                rows[student] = GradeRow(**stored["row"])
                continue
        todo.append(Job(student=student, folder=folder, template=template, work=work, out=out,
                        settings=settings, trusted=trust, digest=digest))
    if progress:
        print(f"{len(found)} student(s): {len(rows)} already graded, {len(todo)} to grade with "
              f"{min(len(todo), jobs or os.cpu_count() or 1) or 1} worker process(es)", flush=True)
    if todo:
        workers = max(1, min(len(todo), jobs or os.cpu_count() or 1))
        with _pool(workers) as pool:
            futures = {pool.submit(grade_and_remember, job): job for job in todo}
            try:
                from concurrent.futures import as_completed

                for future in as_completed(futures):
                    job = futures[future]
                    try:
                        row = future.result()
                    except Exception as error:  # the worker itself died: the grader's failure
                        row = GradeRow(job.student, assignment, max_score=template.max_score, status="error",
                                       reason=f"the grading worker failed: {type(error).__name__}: {error}"[:400])
                    rows[job.student] = row
                    if progress:
                        print(f"  [{len(rows)}/{len(found)}] {printable(row.student)}: {row.score:g}/"
                              f"{row.max_score:g} {row.status} ({row.seconds:.0f} s)", flush=True)
            except KeyboardInterrupt:
                for process in list(getattr(pool, "_processes", {}).values()):
                    process.kill()
                pool.shutdown(wait=False, cancel_futures=True)
                raise
    ordered = [rows[student] for student in sorted(found)]
    tmp_csv = out / "grades.csv.tmp"
    with tmp_csv.open("w", newline="", encoding="utf-8", errors="surrogateescape") as handle:
        writer = csv.DictWriter(handle, fieldnames=FIELDS)
        writer.writeheader()
        for row in ordered:
            writer.writerow(row.as_csv())
    os.replace(tmp_csv, out / "grades.csv")
    return ordered


def summary(rows: list[GradeRow]) -> str:
    """Format the grade rows as a table for the terminal."""
    if not rows:
        return "no submissions found"
    names = [printable(r.student) for r in rows]
    width = max(7, *(min(len(n), 40) for n in names))
    lines = [f"{'student':<{width}}  {'score':>9}  {'status':<7}  reason"]
    for name, r in zip(names, rows):
        score_text = f"{r.score:g}/{r.max_score:g}"
        lines.append(f"{name:<{width}}  {score_text:>9}  {r.status:<7}  {r.reason}")
        lines += [f"{'':<{width}}  {'':>9}  {'':<7}  flag: {flag}" for flag in r.flags]
    review = sum(r.needs_review for r in rows)
    lines.append(f"{len(rows)} submission(s), {review} need manual review")
    return "\n".join(lines)
