"""nbconvert preprocessors for student feedback: nothing of a hidden test may reach it."""

from __future__ import annotations

from nbconvert.preprocessors import Preprocessor
from traitlets import Bool


class HideTestTracebacks(Preprocessor):
    """Reduce the traceback of a failing graded test cell to its error message.

    nbgrader's ClearHiddenTests removes hidden tests from the cell's source, but a failing
    hidden assert's traceback still prints its own source lines. The student keeps the
    message (which says what was expected and what came) and loses only the code.
    """

    enabled = Bool(True).tag(config=True)  # nbconvert preprocessors are off unless enabled

    def preprocess_cell(self, cell, resources, index):  # noqa: D102 - nbconvert API
        if cell.cell_type == "code" and cell.get("metadata", {}).get("nbgrader", {}).get("grade"):
            for output in cell.get("outputs", []):
                if output.get("output_type") == "error":
                    message = f"{output.get('ename', 'Error')}: {output.get('evalue', '')}".rstrip(": ")
                    output["traceback"] = [message or "a test failed", "(the test's code is not shown)"]
        return cell, resources
