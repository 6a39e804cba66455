"""nbgrader configuration: solutions/ is the source, notebooks/ the release.

Run nbgrader (and `course`) from the repository root: nbgrader reads this file from the
current directory only. Grading state lives in grading/, which git ignores.
"""

c = get_config()  # noqa: F821  (provided by nbgrader)

c.CourseDirectory.course_id = "pytorch-nlp-course"
c.CourseDirectory.source_directory = "solutions"
c.CourseDirectory.release_directory = "notebooks"
c.CourseDirectory.submitted_directory = "grading/submitted"
c.CourseDirectory.autograded_directory = "grading/autograded"
c.CourseDirectory.feedback_directory = "grading/feedback"
c.CourseDirectory.db_url = "sqlite:///grading/gradebook.db"

# Deterministic releases: no execution timestamps in generated notebooks.
c.ClearOutput.remove_metadata_fields = {"collapsed", "scrolled", "execution", "ExecuteTime"}

# Training cells run longer than nbgrader's 30 s default; graded test cells stay well under.
c.Execute.timeout = 300
c.Execute.interrupt_on_timeout = True
