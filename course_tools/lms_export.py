"""Grades out of nbgrader's gradebook as a CSV that Canvas or Moodle imports (`course export`).

The roster (CSV, one row per student) maps nbgrader's student id to the LMS's ids:

    nbgrader_id,name,canvas_id,sis_user_id,sis_login_id,section,first_name,last_name,idnumber,email

Only `nbgrader_id` is required; fill the columns of the LMS you import into.

* **Canvas** (Grades > Import): the columns of Canvas's own gradebook export, `Student, ID,
  SIS User ID, SIS Login ID, Section`, then one column per assignment; a heading `Name (1234)`
  updates Canvas assignment 1234, a new heading creates an assignment. The second row is the
  `Points Possible` row Canvas writes in its exports. A blank cell leaves Canvas's grade alone.
* **Moodle** (Grades > Import > CSV file): `First name, Last name, ID number, Email address`, then
  one column per assignment. In the import's mapping choose *Map from* `Email address` to
  `useremail` (or `ID number` to `useridnumber`) and each assignment column to its grade item.

Every gradebook student must be in the roster (an export that drops someone silently is worse
than none); a roster student without a submission gets a blank cell.
"""

from __future__ import annotations

import csv
import io
import os
import sys
from dataclasses import dataclass
from pathlib import Path

FORMATS = ("canvas", "moodle")
CANVAS_FIXED = ["Student", "ID", "SIS User ID", "SIS Login ID", "Section"]
MOODLE_FIXED = ["First name", "Last name", "ID number", "Email address"]


class ExportError(ValueError):
    """The roster and the gradebook disagree, or the roster cannot be read."""


@dataclass(frozen=True)
class Scores:
    """What the gradebook holds: assignments in order, their points, each student's score per assignment."""

    assignments: list[str]
    max_scores: dict[str, float]
    scores: dict[str, dict[str, float]]   # student -> assignment -> score (only submitted ones)


def ensure_alembic() -> None:
    """Put this environment's scripts on PATH: nbgrader's Gradebook runs `alembic` from there."""
    scripts = os.path.dirname(sys.executable)
    if scripts not in os.environ.get("PATH", "").split(os.pathsep):
        os.environ["PATH"] = os.pathsep.join([scripts, os.environ.get("PATH", "")])


def read_scores(db_url: str, assignments: list[str] | None = None) -> Scores:
    """Every student's total per assignment from nbgrader's gradebook (auto plus manual, as the formgrader shows)."""
    from nbgrader.api import Gradebook, MissingEntry

    ensure_alembic()
    with Gradebook(db_url) as gb:
        names = assignments or sorted(a.name for a in gb.assignments)
        max_scores, scores = {}, {s.id: {} for s in gb.students}
        for name in names:
            try:
                assignment = gb.find_assignment(name)
            except MissingEntry:
                raise ExportError(f"no assignment {name!r} in the gradebook") from None
            max_scores[name] = float(assignment.max_score)
            for submission in assignment.submissions:
                scores.setdefault(submission.student.id, {})[name] = float(submission.score)
    return Scores(names, max_scores, scores)


def read_roster(path: Path) -> dict[str, dict[str, str]]:
    """The roster: nbgrader id -> its row (stripped strings)."""
    with Path(path).open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        if not reader.fieldnames or "nbgrader_id" not in reader.fieldnames:
            raise ExportError(f"{path}: the first line must name the columns, one of them nbgrader_id")
        roster = {}
        for line, row in enumerate(reader, start=2):
            sid = (row.get("nbgrader_id") or "").strip()
            if not sid:
                raise ExportError(f"{path}:{line}: no nbgrader_id")
            if sid in roster:
                raise ExportError(f"{path}:{line}: {sid} is listed twice")
            roster[sid] = {k: (v or "").strip() for k, v in row.items() if k}
    return roster


def _number(value: float | None) -> str:
    return "" if value is None else f"{value:g}"


def to_csv(fmt: str, scores: Scores, roster: dict[str, dict[str, str]], headings: dict[str, str] | None = None) -> str:
    """The CSV text for FMT (canvas or moodle); raises ExportError naming gradebook students missing from the roster."""
    if fmt not in FORMATS:
        raise ExportError(f"format {fmt!r}: expected one of {', '.join(FORMATS)}")
    missing = sorted(set(scores.scores) - set(roster))
    if missing:
        raise ExportError(f"in the gradebook but not in the roster: {', '.join(missing)}")
    headings = headings or {}
    columns = [headings.get(a, a) for a in scores.assignments]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    if fmt == "canvas":
        writer.writerow(CANVAS_FIXED + columns)
        writer.writerow(["    Points Possible", "", "", "", ""] + [_number(scores.max_scores[a]) for a in scores.assignments])
        for sid, person in roster.items():
            fixed = [person.get("name") or sid, person.get("canvas_id", ""), person.get("sis_user_id", ""),
                     person.get("sis_login_id", ""), person.get("section", "")]
            writer.writerow(fixed + [_number(scores.scores.get(sid, {}).get(a)) for a in scores.assignments])
    else:
        writer.writerow(MOODLE_FIXED + columns)
        for sid, person in roster.items():
            fixed = [person.get("first_name", ""), person.get("last_name", ""), person.get("idnumber", ""),
                     person.get("email", "")]
            writer.writerow(fixed + [_number(scores.scores.get(sid, {}).get(a)) for a in scores.assignments])
    return out.getvalue()


def export(db_url: str, fmt: str, roster_path: Path, out: Path, assignments: list[str] | None = None,
           headings: dict[str, str] | None = None) -> str:
    """Write the FMT CSV of the gradebook at DB_URL for the roster to OUT; return its text."""
    text = to_csv(fmt, read_scores(db_url, assignments), read_roster(roster_path), headings)
    Path(out).write_text(text, encoding="utf-8", newline="")
    return text
