"""course_utils: the plumbing a learner imports instead of re-typing it.

Data, plots, a training loop, device and seeds, checks and memory measurement: everything a
notebook may import from the course, and nothing of the grader (that is ``course_tools``).
Nothing here defines a function that a notebook asks students to write.
"""

from course_utils.checks import assert_close, check_shape
from course_utils.runtime import describe_environment, get_device, seed_everything

__all__ = ["assert_close", "check_shape", "describe_environment", "get_device", "seed_everything"]
__version__ = "0.1.0"
