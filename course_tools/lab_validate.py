"""The *Validate* button in JupyterLab, reporting as ``course validate`` does.

nbgrader's button posts to its server extension, which runs ``nbgrader.validator.Validator`` and shows
every failing cell with its full traceback (an untouched 03: ten tracebacks, 22,585 characters, no
points). ``course_tools/labconfig/common/nbgrader_config.py`` (read by that extension on every click)
swaps in :class:`CourseValidator`: the same nbgrader pipeline and scoring rule as ``course validate``,
and one table: per test PASS/FAIL/PART, its points and the failing assertion's message, then the total.
The dialog is nbgrader's own; on success it says "Success! Your notebook passes all the tests."
"""

from __future__ import annotations

import html
import sys
from pathlib import Path

HANDLERS = "nbgrader.server_extensions.validate_assignment.handlers"


class CourseValidator:
    """Stands in for ``nbgrader.validator.Validator`` in the Validate button's server handler."""

    def __init__(self, config=None, **kwargs) -> None:
        self.config = config

    def validate(self, filename: str) -> dict:
        import nbformat

        from course_tools.validate import checked_here, report, text_for, validate

        try:
            lang = nbformat.read(filename, as_version=4).metadata.get("language")
        except Exception:                    # validate() says what is wrong with the file
            lang = None
        lang = lang if isinstance(lang, str) else None
        try:
            items = validate(Path(filename))
        except ValueError as error:          # another assignment's notebook, no graded cells ...
            return {"failed": [{"source": "this notebook cannot be validated", "error": html.escape(str(error))}]}
        earned = sum(r.score or 0 for r in items)
        total = sum(r.points for r in items)
        failing = [r for r in items if not r.passed]
        if items and not failing:
            return {}                        # nbgrader's dialog: "Success! Your notebook passes all the tests."
        summary = text_for(lang)["button"].format(earned=f"{earned:g}", total=f"{total:g}", failing=len(failing),
                                                  count=len(items))
        if checked_here(items, lang):
            summary += ("。" if lang == "zh_CN" else ". ") + checked_here(items, lang) + ("。" if lang == "zh_CN" else ".")
        return {"failed": [{"source": summary, "error": html.escape(report(items, lang))}]}


def install() -> bool:
    """Swap the Validate button's validator, when nbgrader's handler is loaded (in JupyterLab's server)."""
    handlers = sys.modules.get(HANDLERS)
    if handlers is None:
        return False
    handlers.Validator = CourseValidator
    return True
