"""JupyterHub for the course, started by `course hub --roster FILE` (what it sets: course_tools/hub.py).

PAM login by default; for an LMS or OAuth login see README, "Running a class".
"""

from course_tools.hub import configure

c = get_config()  # noqa: F821  (provided by JupyterHub)
configure(c)

# An LMS or OAuth login (README, "Running a class"): `course hub --extra-config FILE` loads FILE last.
import os  # noqa: E402

if os.environ.get("COURSE_HUB_EXTRA_CONFIG"):
    load_subconfig(os.environ["COURSE_HUB_EXTRA_CONFIG"])  # noqa: F821  (provided by JupyterHub)
