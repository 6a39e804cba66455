"""`course grade`'s results into nbgrader's gradebook and feedback folder (`course grade --gradebook`).

What `nbgrader autograde` leaves behind, written from the sandboxed grader's results: the
assignment's cells (from the release, as `generate_assignment` records them), then per student a
Student, a SubmittedAssignment (with the submission's timestamp), and a Grade per graded cell with
the cell's `auto_score`. A submission that needs review (held tests, a kernel death, flags, an
invalid or failed notebook) has its failing or unscored grades marked `needs_manual_grade`, so
the formgrader lists it under manual grading; `nbgrader export` reads the same rows.

Feedback pages go to nbgrader's `feedback/<student>/<assignment>/<notebook>.html` with the
submission's `timestamp.txt` and `submission_secret.txt`, which `nbgrader release_feedback` reads
to name each page by the hash of the student's own secret: `fetch_feedback` then finds it for
that student only.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from course_tools.feedback import MATHJAX_DIR
from course_tools.grading import GradeRow, course_config

SCORES = "scores"  # course grade's per-cell scores: OUT/scores/<student>/<assignment>/scores.json


@dataclass
class Recorded:
    """What `record_grades` wrote."""

    students: list[str] = field(default_factory=list)
    for_review: list[str] = field(default_factory=list)
    feedback: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def course_dir(root: Path):
    """nbgrader's CourseDirectory for the repository at ROOT, configured by its nbgrader_config.py."""
    from nbgrader.coursedir import CourseDirectory

    config = course_config(root)
    config.CourseDirectory.root = str(root)
    return CourseDirectory(config=config)


def db_url(coursedir, root: Path) -> str:
    """The gradebook's URL, a relative sqlite path made absolute against ROOT."""
    url = coursedir.db_url
    prefix = "sqlite:///"
    if url.startswith(prefix) and not url[len(prefix):].startswith("/"):
        url = prefix + str(root / url[len(prefix):])
    return url


def record_assignment(url: str, assignment: str, release: Path) -> None:
    """Record ASSIGNMENT's notebooks and cells (from its RELEASE folder), unless the gradebook has them."""
    from nbgrader.api import Gradebook
    from nbgrader.preprocessors import ComputeChecksums, SaveCells

    with Gradebook(url) as gb:
        gb.update_or_create_assignment(assignment)
        known = {nb.name for nb in gb.find_assignment(assignment).notebooks}
    for path in sorted(release.glob("*.ipynb")):
        if path.stem in known:
            continue
        nb = nbformat.read(path, as_version=4)
        resources = {"nbgrader": {"notebook": path.stem, "assignment": assignment, "db_url": url}}
        nb, resources = ComputeChecksums().preprocess(nb, resources)
        SaveCells().preprocess(nb, resources)


def _timestamp(folder: Path):
    from nbgrader.utils import parse_utc

    stamp = folder / "timestamp.txt"
    if stamp.is_file():
        try:
            return parse_utc(stamp.read_text().strip())
        except ValueError:
            return None
    return None


def record_grades(root: Path, assignment: str, rows: list[GradeRow], out: Path,
                  submitted: Path | None = None) -> Recorded:
    """Write ROWS (course grade's results under OUT) into the repository's gradebook and feedback folder."""
    from nbgrader.api import Gradebook

    coursedir = course_dir(root)
    url = db_url(coursedir, root)
    submitted = submitted or Path(coursedir.format_path(coursedir.submitted_directory, ".", ".")).resolve()
    record_assignment(url, assignment, Path(coursedir.format_path(coursedir.release_directory, ".", assignment)))
    done = Recorded()
    with Gradebook(url) as gb:
        for row in rows:
            folder = submitted / row.student / assignment
            gb.update_or_create_student(row.student)
            timestamp = _timestamp(folder)
            submission = (gb.update_or_create_submission(assignment, row.student, timestamp=timestamp)
                          if timestamp else gb.update_or_create_submission(assignment, row.student))
            scores_file = out / SCORES / row.student / assignment / "scores.json"
            scores = json.loads(scores_file.read_text()) if scores_file.is_file() else {}
            review = row.needs_review
            for notebook in submission.notebooks:
                cells = scores.get(notebook.name, {})
                for grade in notebook.grades:
                    auto = cells.get(grade.name)
                    grade.auto_score = auto if row.status in ("graded", "review") else None
                    grade.needs_manual_grade = grade.auto_score is None or (
                        review and grade.auto_score < grade.max_score)
                for comment in notebook.comments:
                    comment.auto_comment = f"course grade: {row.status}: {row.reason}" if review else None
            gb.db.commit()
            done.students.append(row.student)
            if review:
                done.for_review.append(row.student)
            for page in sorted((out / "feedback" / row.student / assignment).glob("*.html")):
                dest = Path(coursedir.format_path(coursedir.feedback_directory, row.student, assignment))
                secret = folder / "submission_secret.txt"
                if not secret.is_file() or not (folder / "timestamp.txt").is_file():
                    done.notes.append(f"{row.student}: no submission_secret.txt/timestamp.txt in {folder} "
                                      f"(not collected by nbgrader?): feedback not placed for release_feedback")
                    break
                dest.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(page, dest / page.name)
                shutil.copyfile(folder / "timestamp.txt", dest / "timestamp.txt")
                shutil.copyfile(secret, dest / "submission_secret.txt")
                done.feedback.append(dest / page.name)
    # the pages load MathJax from ../../_mathjax: beside the students' folders, as in OUT/feedback
    mathjax = out / "feedback" / MATHJAX_DIR
    shared = Path(os.path.normpath(coursedir.format_path(coursedir.feedback_directory, ".", "."))) / MATHJAX_DIR
    if done.feedback and (mathjax / "MathJax.js").is_file() and not (shared / "MathJax.js").is_file():
        shutil.copytree(mathjax, shared, dirs_exist_ok=True)
    return done


def export_csv(root: Path, path: Path) -> None:
    """`nbgrader export` of the repository's gradebook to PATH (its own CSV exporter)."""
    from nbgrader.api import Gradebook
    from nbgrader.plugins import CsvExportPlugin

    coursedir = course_dir(root)
    plugin = CsvExportPlugin(to=str(path), log=logging.getLogger("course.export"))
    with Gradebook(db_url(coursedir, root)) as gb:
        plugin.export(gb)

