"""``course grade``: autograde submissions with nbgrader, one scratch course per student.

Layout in: ``SUBMISSIONS/<student>/<assignment>/<notebook>.ipynb`` (nbgrader's).
Out: ``OUT/grades.csv`` and ``OUT/feedback/<student>/<assignment>/<notebook>.html``.

Each student is graded in a scratch course folder of its own (a copy of the gradebook
template and of the submission), so that submissions run side by side, the student's
original file is never touched, and one broken submission cannot stop the others.
"""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

from course_utils.build import list_assignments, nbgrader

SCRATCH_CONFIG = """\
c = get_config()  # noqa: F821
c.CourseDirectory.course_id = "course"
c.CourseDirectory.source_directory = "source"
c.CourseDirectory.release_directory = "release"
c.CourseDirectory.submitted_directory = "submitted"
c.CourseDirectory.autograded_directory = "autograded"
c.CourseDirectory.feedback_directory = "feedback"
c.CourseDirectory.db_url = "sqlite:///gradebook.db"
c.Execute.timeout = {cell_timeout}
c.Execute.interrupt_on_timeout = True
c.ClearOutput.remove_metadata_fields = {{"collapsed", "scrolled", "execution", "ExecuteTime"}}
c.GenerateFeedback.preprocessors = [
    "nbgrader.preprocessors.GetGrades",
    "nbgrader.preprocessors.ClearHiddenTests",
    "course_utils.feedback.HideTestTracebacks",
    "nbconvert.preprocessors.CSSHTMLHeaderPreprocessor",
]
c.ClearHiddenTests.enforce_metadata = False
"""

FIELDS = ["student", "assignment", "score", "max_score", "status", "reason", "failed_tests"]


@dataclass
class GradeRow:
    """One line of grades.csv."""

    student: str
    assignment: str
    score: float = 0.0
    max_score: float = 0.0
    status: str = "graded"
    reason: str = ""
    failed_tests: list[str] = field(default_factory=list)

    def as_csv(self) -> dict:
        """Return the row as CSV fields."""
        row = asdict(self)
        row["failed_tests"] = " ".join(self.failed_tests)
        row["score"] = f"{self.score:g}"
        row["max_score"] = f"{self.max_score:g}"
        return row


def _child_env() -> dict:
    """Environment for grading processes that share the CPU: one torch thread each."""
    env = dict(os.environ)
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", MPLBACKEND="Agg", PYTHONUNBUFFERED="1")
    return env


def _tail(result: subprocess.CompletedProcess, lines: int = 6) -> str:
    text = (result.stderr or "") + (result.stdout or "")
    errors = [line for line in text.splitlines() if "ERROR" in line or "Error" in line]
    return " | ".join((errors or text.splitlines())[-lines:])[:500]


def make_template(root: Path, assignment: str, work: Path, cell_timeout: int) -> Path:
    """Create the gradebook template: the assignment generated once from solutions/."""
    template = work / "template"
    if template.exists():
        shutil.rmtree(template)
    shutil.copytree(root / "solutions" / assignment, template / "source" / assignment,
                    ignore=shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__"))
    (template / "nbgrader_config.py").write_text(SCRATCH_CONFIG.format(cell_timeout=cell_timeout))
    result = nbgrader(["generate_assignment", assignment, "--force"], cwd=template)
    if result.returncode != 0:
        raise RuntimeError(f"could not generate {assignment} from solutions/: {_tail(result)}")
    return template


def find_submissions(submissions: Path, assignment: str) -> dict[str, Path]:
    """Return {student: submitted assignment folder} for every student who has one."""
    found = {}
    for student_dir in sorted(p for p in submissions.iterdir() if p.is_dir()):
        folder = student_dir / assignment
        if folder.is_dir():
            found[student_dir.name] = folder
    return found


def grade_one(student: str, folder: Path, assignment: str, template: Path, work: Path,
              out: Path, cell_timeout: int) -> GradeRow:
    """Grade one student's submission in its own scratch course; never raises."""
    row = GradeRow(student=student, assignment=assignment)
    scratch = work / "students" / student
    try:
        if scratch.exists():
            shutil.rmtree(scratch)
        scratch.mkdir(parents=True)
        shutil.copy(template / "gradebook.db", scratch / "gradebook.db")
        (scratch / "nbgrader_config.py").write_text(SCRATCH_CONFIG.format(cell_timeout=cell_timeout))
        shutil.copytree(folder, scratch / "submitted" / student / assignment)
        budget = cell_timeout * 40
        result = nbgrader(["autograde", assignment, f"--student={student}", "--create", "--force"],
                          cwd=scratch, timeout=budget, env=_child_env())
        if result.returncode != 0:
            row.status, row.reason = "error", f"autograde failed: {_tail(result)}"
        feedback = nbgrader(["generate_feedback", assignment, f"--student={student}", "--force"],
                            cwd=scratch, timeout=300, env=_child_env())
        _read_scores(row, scratch / "gradebook.db", assignment)
        for html in (scratch / "feedback" / student / assignment).glob("*.html"):
            dest = out / "feedback" / student / assignment / html.name
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(html, dest)
        if feedback.returncode != 0 and row.status == "graded":
            row.reason = f"feedback failed: {_tail(feedback)}"
    except subprocess.TimeoutExpired as error:
        row.status, row.reason = "error", f"grading exceeded {error.timeout:.0f} s"
    except Exception as error:  # one broken submission must not stop the others
        row.status, row.reason = "error", f"{type(error).__name__}: {error}"[:500]
    return row


def _read_scores(row: GradeRow, db: Path, assignment: str) -> None:
    from nbgrader.api import Gradebook, MissingEntry

    with Gradebook(f"sqlite:///{db}") as gb:
        row.max_score = float(gb.find_assignment(assignment).max_score)
        try:
            submission = gb.find_submission(assignment, row.student)
        except MissingEntry:
            row.status = "error"
            row.reason = row.reason or "no graded notebook"
            return
        row.score = float(submission.score)
        for notebook in submission.notebooks:
            for grade in notebook.grades:
                if grade.auto_score is not None and grade.auto_score < grade.max_score:
                    row.failed_tests.append(grade.name)
        if not row.reason:
            row.reason = "all tests pass" if not row.failed_tests else f"{len(row.failed_tests)} test(s) fail"


def grade(root: Path, submissions: Path, assignment: str | None = None, out: Path | None = None,
          jobs: int | None = None, cell_timeout: int = 300) -> list[GradeRow]:
    """Grade every submission of ``assignment`` and write grades.csv and feedback; return the rows."""
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
    template = make_template(root, assignment, work, cell_timeout)
    found = find_submissions(submissions, assignment)
    jobs = max(1, jobs or os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        rows = list(pool.map(
            lambda item: grade_one(item[0], item[1], assignment, template, work, out, cell_timeout),
            found.items(),
        ))
    with (out / "grades.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=FIELDS)
        writer.writeheader()
        for row in rows:
            writer.writerow(row.as_csv())
    return rows


def summary(rows: list[GradeRow]) -> str:
    """Format the grade rows as a table for the terminal."""
    if not rows:
        return "no submissions found"
    width = max(len(r.student) for r in rows)
    lines = [f"{'student':<{width}}  score     status  reason"]
    for r in rows:
        lines.append(f"{r.student:<{width}}  {r.score:>4g}/{r.max_score:<4g} {r.status:<7} {r.reason}")
    return "\n".join(lines)
