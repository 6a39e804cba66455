"""nbconvert preprocessors for student feedback: nothing of a hidden test may reach it."""

from __future__ import annotations

import re

from nbconvert.preprocessors import Preprocessor
from nbgrader.utils import is_grade
from traitlets import Bool, Integer

HIDDEN = re.compile(r"### BEGIN HIDDEN TESTS\n?(.*?)### END HIDDEN TESTS", re.S)


def hidden_lines(nb, min_chars: int = 12) -> set[str]:
    """The hidden tests' lines (stripped, long enough to be recognisable) in a notebook's graded cells."""
    lines: set[str] = set()
    for cell in nb.cells:
        if is_grade(cell):
            for block in HIDDEN.findall(cell.get("source", "")):
                lines.update(line.strip() for line in block.splitlines() if len(line.strip()) >= min_chars)
    return lines


class ScrubHiddenTestText(Preprocessor):
    """Remove hidden-test code from every output of every cell, however it got there.

    Student code can print what the kernel ran (IPython's ``In``, ``linecache``, a traceback it
    formats itself): any output line holding a line of a hidden test is replaced. Runs before
    nbgrader's ClearHiddenTests, while the hidden tests are still in the sources.
    """

    enabled = Bool(True).tag(config=True)
    min_chars = Integer(12, help="shorter hidden lines are too common to recognise").tag(config=True)

    def preprocess(self, nb, resources):  # noqa: D102 - nbconvert API
        secret = hidden_lines(nb, self.min_chars)
        if not secret:
            return nb, resources

        def clean(text: str) -> str:
            if not any(line in text for line in secret):
                return text
            return "".join("[a line of a hidden test was removed]\n" if any(s in line for s in secret) else line
                           for line in text.splitlines(keepends=True))

        for cell in nb.cells:
            for output in cell.get("outputs", []):
                if "text" in output:
                    text = output["text"] if isinstance(output["text"], str) else "".join(output["text"])
                    output["text"] = clean(text)
                for key, value in list(output.get("data", {}).items()):
                    if isinstance(value, str) and key.startswith("text/"):
                        output["data"][key] = clean(value)
                if "traceback" in output:
                    output["traceback"] = [clean(line) for line in output["traceback"]]
                if "evalue" in output:
                    output["evalue"] = clean(output["evalue"])
        return nb, resources


class HideTestTracebacks(Preprocessor):
    """Reduce the traceback of a failing graded test cell to its error message.

    nbgrader's ClearHiddenTests removes hidden tests from the cell's source, but a failing
    hidden assert's traceback still prints its own source lines. The student keeps the
    message (which says what was expected and what came) and loses only the code.
    """

    enabled = Bool(True).tag(config=True)  # nbconvert preprocessors are off unless enabled

    def preprocess_cell(self, cell, resources, index):  # noqa: D102 - nbconvert API
        if cell.cell_type == "code" and is_grade(cell):
            for output in cell.get("outputs", []):
                if output.get("output_type") == "error":
                    message = f"{output.get('ename', 'Error')}: {output.get('evalue', '')}".rstrip(": ")
                    output["traceback"] = [message or "a test failed", "(the test's code is not shown)"]
        return cell, resources
