"""nbgrader settings that `course lab` adds for students and instructors alike.

The exchange (where assignments are released, fetched and submitted) is a folder of the
course repository, `exchange/`, passed in by `course lab` as COURSE_EXCHANGE.
"""

import os

c = get_config()  # noqa: F821  (provided by nbgrader)

if os.environ.get("COURSE_EXCHANGE"):
    c.Exchange.root = os.environ["COURSE_EXCHANGE"]

# The Validate button reports as `course validate` does (course_tools/lab_validate.py): read by
# nbgrader's validate handler on every click, so the swap happens in JupyterLab's server only.
from course_tools.lab_validate import install  # noqa: E402

install()
