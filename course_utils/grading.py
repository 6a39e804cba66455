"""``course grade``: autograde submissions with nbgrader, safely, in parallel, losing nothing.

In: ``SUBMISSIONS/<student>/<assignment>/<notebook>.ipynb`` (nbgrader's layout).
Out: ``OUT/grades.csv`` and ``OUT/feedback/<student>/<assignment>/<notebook>.html``.

For each student, in a scratch course folder of its own:
1. the submission is read (bad files get a row and a one-line reason, never a traceback) and
   rebuilt on the release, so that only answer cells come from the student (see integrity.py);
2. its student cells are scanned for monkeypatching, file access and exits (flags for review);
3. nbgrader autogrades it with ``GuardedExecute`` (notebook deadline, output caps, kernel-death
   recovery) in a kernel started by ``course_utils.sandbox`` (bubblewrap when installed: no
   network, no view of solutions/, the gradebook or other students, one writable folder);
4. scores come from that student's gradebook copy; feedback HTML has no hidden tests.
Finished students are remembered (by a hash of submission and solution) so that an interrupted
run regrades only what was not finished, and grading again gives the same result.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import os
import shutil
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import nbformat

from course_utils.build import list_assignments, nbgrader
from course_utils.integrity import BadSubmission, load_submission, reconstruct, scan_notebook

SCRATCH_CONFIG = """\
c = get_config()  # noqa: F821
c.CourseDirectory.course_id = "course"
c.CourseDirectory.source_directory = "source"
c.CourseDirectory.release_directory = "release"
c.CourseDirectory.submitted_directory = "submitted"
c.CourseDirectory.autograded_directory = "autograded"
c.CourseDirectory.feedback_directory = "feedback"
c.CourseDirectory.db_url = "sqlite:///gradebook.db"
c.ClearOutput.remove_metadata_fields = {{"collapsed", "scrolled", "execution", "ExecuteTime"}}
c.OverwriteCells.add_missing_cells = True
c.Autograde.autograde_preprocessors = [
    "course_utils.gradeexec.GuardedExecute",
    "nbgrader.preprocessors.IgnorePattern",
    "nbconvert.preprocessors.ClearMetadataPreprocessor",
    "nbgrader.preprocessors.LimitOutput",
    "course_utils.gradeexec.CapOutput",
    "nbgrader.preprocessors.SaveAutoGrades",
    "nbgrader.preprocessors.AssignLatePenalties",
    "nbgrader.preprocessors.CheckCellMetadata",
]
c.Execute.timeout = {cell_timeout}
c.Execute.interrupt_on_timeout = True
c.Execute.kernel_name = "{kernel_name}"
c.GuardedExecute.notebook_timeout = {notebook_timeout}
c.LimitOutput.max_lines = 1000
c.CapOutput.max_chars = 20000
c.KernelManager.transport = "ipc"
c.KernelManager.ip = "{runtime}/k"
c.KernelManager.connection_file = "{runtime}/kernel.json"
c.GenerateFeedback.preprocessors = [
    "nbgrader.preprocessors.GetGrades",
    "nbgrader.preprocessors.ClearHiddenTests",
    "course_utils.feedback.HideTestTracebacks",
    "nbconvert.preprocessors.CSSHTMLHeaderPreprocessor",
]
c.ClearHiddenTests.enforce_metadata = False
"""

FIELDS = ["student", "assignment", "score", "max_score", "status", "reason", "flags",
          "failed_tests", "sandboxed", "seconds"]
SOLUTION_STUDENT = "_solution"


@dataclass
class Settings:
    """Limits for one grading run."""

    cell_timeout: int = 300
    notebook_timeout: int | None = None  # None: a multiple of the solution's own runtime
    memory_gb: float = 4.0
    runtime_factor: float = 3.0


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


def _child_env(jupyter_dir: Path | None = None, runtime: Path | None = None) -> dict:
    env = dict(os.environ)
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", MPLBACKEND="Agg", PYTHONUNBUFFERED="1")
    if jupyter_dir is not None:
        env["JUPYTER_PATH"] = str(jupyter_dir)
    if runtime is not None:
        env["JUPYTER_RUNTIME_DIR"] = str(runtime)
    return env


def _tail(result, lines: int = 4) -> str:
    text = (result.stderr or "") + (result.stdout or "")
    errors = [line for line in text.splitlines() if "ERROR" in line or "Error" in line]
    return " | ".join((errors or text.splitlines())[-lines:])[:400]


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _sha(*parts: bytes) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(hashlib.sha256(part).digest())
    return digest.hexdigest()


# --------------------------------------------------------------------------- template


@dataclass
class Template:
    """The assignment as generated once from solutions/: gradebook, release and extras."""

    folder: Path
    assignment: str
    release: nbformat.NotebookNode
    solution: nbformat.NotebookNode
    max_score: float
    extras: list[Path]
    digest: str


def make_template(root: Path, assignment: str, work: Path) -> Template:
    """Generate the assignment (gradebook with every test) from solutions/ into ``work/template``."""
    folder = work / "template"
    if folder.exists():
        shutil.rmtree(folder)
    source = root / "solutions" / assignment
    shutil.copytree(source, folder / "source" / assignment,
                    ignore=shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__"))
    (folder / "nbgrader_config.py").write_text(
        SCRATCH_CONFIG.format(cell_timeout=30, notebook_timeout=60, kernel_name="python3", runtime="/tmp"))
    result = nbgrader(["generate_assignment", assignment, "--force"], cwd=folder)
    if result.returncode != 0:
        raise RuntimeError(f"could not generate {assignment} from solutions/: {_tail(result)}")
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{folder / 'gradebook.db'}") as gb:
        max_score = float(gb.find_assignment(assignment).max_score)
    notebook = f"{assignment}.ipynb"
    extras = [p for p in sorted((folder / "release" / assignment).rglob("*")) if p.is_file() and p.name != notebook]
    solution_bytes = (source / notebook).read_bytes()
    return Template(folder=folder, assignment=assignment,
                    release=nbformat.read(folder / "release" / assignment / notebook, as_version=4),
                    solution=nbformat.reads(solution_bytes.decode("utf-8"), as_version=4),
                    max_score=max_score, extras=extras, digest=_sha(solution_bytes))


def with_answers(release: nbformat.NotebookNode, solution: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """A copy of the release with the solution cells' answers (markers removed) filled in."""
    import re

    answers = {c.id: c.source for c in solution.cells
               if c.get("metadata", {}).get("nbgrader", {}).get("solution")}
    nb = nbformat.from_dict(json.loads(json.dumps(release)))
    for cell in nb.cells:
        if cell.id in answers:
            cell.source = re.sub(r"(?m)^[ \t]*### (BEGIN|END) SOLUTION\n?", "", answers[cell.id])
    return nb


def solved_release(template: Template) -> nbformat.NotebookNode:
    """The release with the instructor's answers in the solution cells (a perfect submission)."""
    return with_answers(template.release, template.solution)


# --------------------------------------------------------------------------- one student


def _find_notebook(folder: Path, assignment: str) -> Path | None:
    expected = folder / f"{assignment}.ipynb"
    if expected.exists():
        return expected
    others = sorted(p for p in folder.glob("*.ipynb") if not p.name.startswith("."))
    return others[0] if len(others) == 1 else None


def grade_one(student: str, folder: Path | None, template: Template, work: Path, out: Path,
              settings: Settings, notebook: nbformat.NotebookNode | None = None) -> GradeRow:
    """Grade one submission in its own scratch course; never raises."""
    from course_utils.sandbox import bwrap_path, write_kernelspec

    start = time.perf_counter()
    row = GradeRow(student=student, assignment=template.assignment, max_score=template.max_score)
    assignment = template.assignment
    scratch = work / "students" / student
    runtime = Path(tempfile.mkdtemp(prefix="cg-"))  # short: Unix socket paths are limited to 107 bytes
    try:
        if notebook is None:
            path = _find_notebook(folder, assignment) if folder is not None and folder.is_dir() else None
            if path is not None and path.name != f"{assignment}.ipynb":
                row.flags.append(f"notebook named {path.name}, expected {assignment}.ipynb")
            rebuilt = reconstruct(load_submission(path), template.release, assignment)
            row.reason = "; ".join(rebuilt.notes)
            row.flags += scan_notebook(rebuilt.notebook, rebuilt.student_cells)
            notebook = rebuilt.notebook
            if rebuilt.answered == 0:
                row.reason = "; ".join(filter(None, ["no exercise answered", row.reason]))
        if scratch.exists():
            shutil.rmtree(scratch)
        (scratch / "submitted" / student / assignment).mkdir(parents=True)
        shutil.copy(template.folder / "gradebook.db", scratch / "gradebook.db")
        shutil.copytree(template.folder / "source", scratch / "source")
        nbformat.write(notebook, scratch / "submitted" / student / assignment / f"{assignment}.ipynb")
        run = scratch / "run"  # the kernel's only writable folder: the release's extra files, nothing else
        run.mkdir()
        for extra in template.extras:
            target = run / extra.relative_to(template.folder / "release" / assignment)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(extra, target)
        kernel = write_kernelspec(scratch / "jupyter", run, settings.memory_gb)
        row.sandboxed = bwrap_path() is not None
        notebook_timeout = settings.notebook_timeout or 3600
        (scratch / "nbgrader_config.py").write_text(SCRATCH_CONFIG.format(
            cell_timeout=settings.cell_timeout, notebook_timeout=notebook_timeout, kernel_name=kernel,
            runtime=runtime))
        env = _child_env(scratch / "jupyter", runtime)
        result = nbgrader(["autograde", assignment, f"--student={student}", "--create", "--force"],
                          cwd=scratch, timeout=notebook_timeout + 180, env=env)
        _read_scores(row, scratch / "gradebook.db", assignment)
        graded = scratch / "autograded" / student / assignment / f"{assignment}.ipynb"
        if result.returncode != 0 or not graded.exists():
            row.status = "error"
            row.reason = "; ".join(filter(None, [f"autograde failed: {_tail(result)}", row.reason]))
        else:
            _note_guards(row, nbformat.read(graded, as_version=4))
            feedback = nbgrader(["generate_feedback", assignment, f"--student={student}", "--force"],
                                cwd=scratch, timeout=300, env=env)
            for html in (scratch / "feedback" / student / assignment).glob("*.html"):
                dest = out / "feedback" / student / assignment / html.name
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(html, dest)
            if feedback.returncode != 0:
                row.flags.append(f"feedback not generated: {_tail(feedback)}")
    except BadSubmission as error:
        row.status, row.reason = "invalid", str(error)
    except Exception as error:  # one broken submission must never stop the others
        import subprocess

        row.status = "error"
        row.reason = (f"grading exceeded {error.timeout:.0f} s" if isinstance(error, subprocess.TimeoutExpired)
                      else f"{type(error).__name__}: {error}"[:400])
    finally:
        shutil.rmtree(runtime, ignore_errors=True)
    if not row.reason:
        row.reason = "all tests pass" if not row.failed_tests else f"{len(row.failed_tests)} test(s) fail"
    if row.status == "graded" and row.flags:
        row.status = "review"
    if not row.sandboxed and row.status in ("graded", "review"):
        row.reason += "; not sandboxed"
    row.seconds = time.perf_counter() - start
    return row


def _note_guards(row: GradeRow, nb: nbformat.NotebookNode) -> None:
    """Add what the guards did (kernel deaths, deadline, truncated output) to the row."""
    from course_utils.gradeexec import KERNEL_DIED, NOTEBOOK_TIMEOUT

    died, late, timeouts = [], [], []
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            name = output.get("ename")
            key = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id") or cell.get("id")
            if name == KERNEL_DIED and "not run" not in output.get("evalue", ""):
                died.append(key)
            elif name == NOTEBOOK_TIMEOUT:
                late.append(key)
            elif name == "CellTimeoutError":
                timeouts.append(key)
    notes = []
    if died:
        notes.append(f"kernel died in cell {', '.join(died)} (skipped; later cells ran in a fresh kernel)")
        row.status = "review"
    if timeouts:
        notes.append(f"cell time limit hit in {', '.join(timeouts)}")
    if late:
        notes.append(f"notebook time limit reached: {len(late)} cell(s) not run, from {late[0]}")
    if notes:
        row.reason = "; ".join(filter(None, [*notes, row.reason]))


def _read_scores(row: GradeRow, db: Path, assignment: str) -> None:
    from nbgrader.api import Gradebook, MissingEntry

    if not db.exists():
        return
    with Gradebook(f"sqlite:///{db}") as gb:
        try:
            submission = gb.find_submission(assignment, row.student)
        except MissingEntry:
            return
        row.score = float(submission.score)
        row.failed_tests = sorted(
            grade.name for notebook in submission.notebooks for grade in notebook.grades
            if grade.auto_score is None or grade.auto_score < grade.max_score)


# --------------------------------------------------------------------------- the run


def _solution_runtime(template: Template, work: Path, settings: Settings) -> float:
    """Grade the instructor's own solution once (cached) and return its runtime in seconds."""
    cache = work / "solution.json"
    if cache.exists():
        stored = json.loads(cache.read_text())
        if stored.get("digest") == template.digest:
            return float(stored["seconds"])
    probe = Settings(settings.cell_timeout, settings.notebook_timeout or 3600, settings.memory_gb)
    row = grade_one(SOLUTION_STUDENT, None, template, work, work / "solution-feedback", probe,
                    notebook=solved_release(template))
    if row.score < template.max_score:
        raise RuntimeError(f"the solution of {template.assignment} scores {row.score:g}/{template.max_score:g} "
                           f"when graded ({row.reason}); fix solutions/ before grading students")
    _write_atomic(cache, json.dumps({"digest": template.digest, "seconds": row.seconds}))
    return row.seconds


def find_submissions(submissions: Path, assignment: str) -> dict[str, Path]:
    """Return {student: submitted assignment folder} for every student folder under SUBMISSIONS."""
    return {p.name: p / assignment for p in sorted(submissions.iterdir())
            if p.is_dir() and not p.name.startswith((".", "_"))}


def grade(root: Path, submissions: Path, assignment: str | None = None, out: Path | None = None,
          jobs: int | None = None, settings: Settings | None = None, force: bool = False,
          progress: bool = False) -> list[GradeRow]:
    """Grade every student's submission of ``assignment``; write grades.csv and feedback; return the rows."""
    settings = settings or Settings()
    submissions = Path(submissions).resolve()
    if not submissions.is_dir():
        raise FileNotFoundError(f"no submissions folder at {submissions}")
    known = list_assignments(root)
    if assignment is None:
        present = {p.name for s in submissions.iterdir() if s.is_dir() for p in s.iterdir() if p.is_dir()}
        candidates = sorted(present & set(known))
        if len(candidates) != 1:
            raise ValueError(f"say which assignment with --assignment; submissions hold {sorted(present)}")
        assignment = candidates[0]
    if assignment not in known:
        raise ValueError(f"unknown assignment {assignment!r}; solutions/ has {known}")
    out = Path(out or root / "grading" / assignment).resolve()
    work = out / ".work"
    work.mkdir(parents=True, exist_ok=True)
    template = make_template(root, assignment, work)
    if settings.notebook_timeout is None:
        seconds = _solution_runtime(template, work, settings)
        settings = Settings(settings.cell_timeout, max(120, math.ceil(settings.runtime_factor * seconds) + 60),
                            settings.memory_gb, settings.runtime_factor)
    found = find_submissions(submissions, assignment)
    key = _sha(template.digest.encode(), json.dumps(asdict(settings), sort_keys=True).encode())

    def one(student: str) -> GradeRow:
        folder = found[student]
        files = sorted(p for p in folder.rglob("*") if p.is_file()) if folder.is_dir() else []
        digest = _sha(key.encode(), *(str(p.relative_to(folder)).encode() + p.read_bytes() for p in files))
        done = work / "results" / f"{student}.json"
        if not force and done.exists():
            stored = json.loads(done.read_text())
            if stored.get("digest") == digest:
                return GradeRow(**stored["row"])
        row = grade_one(student, folder, template, work, out, settings)
        _write_atomic(done, json.dumps({"digest": digest, "row": asdict(row)}))
        if progress:
            print(f"  {student}: {row.score:g}/{row.max_score:g} {row.status} ({row.seconds:.0f} s)", flush=True)
        return row

    with ThreadPoolExecutor(max_workers=max(1, jobs or os.cpu_count() or 1)) as pool:
        rows = list(pool.map(one, sorted(found)))
    tmp_csv = out / "grades.csv.tmp"
    with tmp_csv.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=FIELDS)
        writer.writeheader()
        for row in rows:
            writer.writerow(row.as_csv())
    os.replace(tmp_csv, out / "grades.csv")
    return rows


def summary(rows: list[GradeRow]) -> str:
    """Format the grade rows as a table for the terminal."""
    if not rows:
        return "no submissions found"
    width = max(7, *(len(r.student) for r in rows))
    lines = [f"{'student':<{width}}  {'score':>9}  {'status':<7}  reason"]
    for r in rows:
        score = f"{r.score:g}/{r.max_score:g}"
        lines.append(f"{r.student:<{width}}  {score:>9}  {r.status:<7}  {r.reason}")
        lines += [f"{'':<{width}}  {'':>9}  {'':<7}  flag: {flag}" for flag in r.flags]
    review = sum(r.needs_review for r in rows)
    lines.append(f"{len(rows)} submission(s), {review} need manual review")
    return "\n".join(lines)
