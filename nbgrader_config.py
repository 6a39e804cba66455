"""nbgrader configuration: solutions/ is the source, notebooks/ the release.

Run nbgrader (and `course`) from the repository root: nbgrader reads this file from the
current directory only. Grading state lives in grading/, which git ignores.

`course grade` reads this file too (its scratch courses load it first, then set their own
folders, the sandboxed kernel and the execution guards), so a change here, such as a longer
`Execute.timeout`, reaches it.
"""

import os
import sys

from nbgrader.converters import GenerateAssignment

from course_tools.release import DropSpeakerNotes, MarkHiddenTests, WholePoints

c = get_config()  # noqa: F821  (provided by nbgrader)

c.CourseDirectory.course_id = "pytorch-nlp-course"
c.CourseDirectory.source_directory = "solutions"
c.CourseDirectory.release_directory = "notebooks"
c.CourseDirectory.submitted_directory = "grading/submitted"
c.CourseDirectory.autograded_directory = "grading/autograded"
c.CourseDirectory.feedback_directory = "grading/feedback"
c.CourseDirectory.db_url = "sqlite:///grading/gradebook.db"

# Plain nbgrader on a fresh clone: the gradebook's folder must exist, and nbgrader runs
# `alembic` from PATH, so put this environment's scripts (.venv/bin) first.
_here = os.path.dirname(os.path.abspath(globals().get("__file__", "nbgrader_config.py")))
os.makedirs(os.path.join(_here, "grading"), exist_ok=True)
# Releases, fetches and submissions go through the exchange: `exchange/` in the repository (ignored
# by git) unless COURSE_EXCHANGE names another (`course lab` passes it on to JupyterLab).
c.Exchange.root = os.environ.get("COURSE_EXCHANGE") or os.path.join(_here, "exchange")
# The hardened exchange (course_tools/exchange.py): collect refuses a submission not owned by the Unix
# user it names, submissions are closed to other students, released feedback cannot be listed.
c.ExchangeFactory.collect = "course_tools.exchange.OwnerCheckedCollect"
c.ExchangeFactory.submit = "course_tools.exchange.PrivateSubmit"
c.ExchangeFactory.release_feedback = "course_tools.exchange.PrivateReleaseFeedback"
c.ExchangeFactory.fetch_feedback = "course_tools.exchange.MathJaxFetchFeedback"
_scripts = os.path.dirname(sys.executable)
if _scripts not in os.environ.get("PATH", "").split(os.pathsep):
    os.environ["PATH"] = os.pathsep.join([_scripts, os.environ.get("PATH", "")])

# Deterministic releases: no execution timestamps in generated notebooks.
c.ClearOutput.remove_metadata_fields = {"collapsed", "scrolled", "execution", "ExecuteTime"}

# Training cells run longer than nbgrader's 30 s default; graded test cells stay well under.
c.Execute.timeout = 300
c.Execute.interrupt_on_timeout = True

# The release leaves out the lecturer's speaker notes (cells of slide type "notes"): first, so that
# nbgrader never records them.
# Last, whole points as JupyterLab saves them (2, not 2.0), so that a student's notebook opened and
# saved without an edit shows no change.
# Then which graded cells hold hidden tests, before nbgrader removes them (for `course validate`).
c.GenerateAssignment.preprocessors = [
    DropSpeakerNotes, MarkHiddenTests, *GenerateAssignment.class_traits()["preprocessors"].default(), WholePoints]
