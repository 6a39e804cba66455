"""What nbgrader's ``generate_assignment`` does beyond its defaults, for this course (nbgrader_config.py).

Imports only nbgrader: the config that loads it is read by plain nbgrader, by ``course build`` and by
JupyterLab's nbgrader extensions on a student's install.
"""

from __future__ import annotations

from nbgrader.preprocessors import NbGraderPreprocessor


def is_speaker_notes(cell) -> bool:
    return cell.get("metadata", {}).get("slideshow", {}).get("slide_type") == "notes"


class DropSpeakerNotes(NbGraderPreprocessor):
    """Remove speaker-notes cells (slide type ``notes``): they are the lecturer's, kept in solutions/
    and in the slides, never in the release (and so never in a submission, its feedback or the site)."""

    def preprocess(self, nb, resources):
        nb.cells = [cell for cell in nb.cells if not is_speaker_notes(cell)]
        return nb, resources


class WholePoints(NbGraderPreprocessor):
    """Write whole points as integers (``2``, not ``2.0``), as JupyterLab saves them: JavaScript has one
    number type, so a student's notebook saved without an edit would otherwise show ``2.0 -> 2`` in a
    diff. Runs last, after nbgrader has recorded and checked the cells."""

    def preprocess(self, nb, resources):
        for cell in nb.cells:
            meta = cell.get("metadata", {}).get("nbgrader", {})
            points = meta.get("points")
            if isinstance(points, float) and points.is_integer():
                meta["points"] = int(points)
        return nb, resources


HIDDEN_MARK = "### BEGIN HIDDEN TESTS"


class MarkHiddenTests(NbGraderPreprocessor):
    """Record in the release's metadata (``course.hidden_tests``) which graded cells also hold hidden
    tests, before nbgrader removes them: ``course validate`` and the Validate button can then say how many
    of the points a student's run checked in full, so that "all tests pass" is never read as full marks.
    The list is only for the student's information: the grader reads its own copy of the release."""

    def preprocess(self, nb, resources):
        hidden = [cell.metadata["nbgrader"]["grade_id"] for cell in nb.cells
                  if cell.cell_type == "code" and cell.get("metadata", {}).get("nbgrader", {}).get("grade")
                  and HIDDEN_MARK in cell.source]
        nb.metadata.setdefault("course", {})["hidden_tests"] = hidden
        return nb, resources
