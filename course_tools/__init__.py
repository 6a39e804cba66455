"""course_tools: the instructor's side of the course, and the ``course`` command.

Building the student release, validating and grading submissions (with the static scan, the
guarded executor and the sandbox), lectures as slides and the course site. Notebooks never
import it; students need only ``course lab`` and ``course validate``, which run on a student's
install. The rest needs the ``instructor`` extra (``pip install -e ".[instructor]"``).
"""
