"""nbconvert preprocessors for student feedback: nothing of a hidden test may reach it."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import nbformat
from nbconvert.preprocessors import Preprocessor
from nbgrader.utils import is_grade
from traitlets import Bool, Integer, Unicode

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
        for cell in nb.cells:  # for SummariseTests, which runs after ClearHiddenTests
            if is_grade(cell) and HIDDEN.search(cell.get("source", "")):
                cell.metadata["course_hidden_tests"] = True
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


HIDDEN_FAILED = "HiddenTestFailure"  # course_tools.gradeexec.HIDDEN_FAILED (not imported: gradeexec needs nbgrader's Execute)
_BUILTIN_ERRORS = {name for name, value in vars(__import__("builtins")).items()
                   if isinstance(value, type) and issubclass(value, BaseException)}


def hidden_failure(evalue: str) -> str:
    """What a student may know of a failing hidden test: that it failed, and the built-in kind of error
    (``AssertionError``, ``TypeError`` ...). Its message stays with the instructor: it may quote the test,
    or values the student's code chose."""
    kind = str(evalue).split(":", 1)[0].strip()
    return f"a hidden test failed ({kind})" if kind in _BUILTIN_ERRORS else "a hidden test failed"


def _message(cell) -> str:
    """A failing cell's error as one readable line: ``AssertionError: what was expected and what came``."""
    for output in cell.get("outputs", []):
        if output.get("output_type") == "error":
            if output.get("ename") == HIDDEN_FAILED:
                return hidden_failure(output.get("evalue", ""))
            message = f"{output.get('ename', 'Error')}: {output.get('evalue', '')}".rstrip(": ")
            return message if len(message) <= 400 else message[:397] + "..."
    return ""


def _what(source: str) -> str:
    """The first line of a test cell's opening docstring: what the test checks."""
    import ast

    try:
        body = ast.parse(source).body
    except SyntaxError:
        return ""
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
            and isinstance(body[0].value.value, str):
        return body[0].value.value.strip().splitlines()[0]
    return ""


class HideTestTracebacks(Preprocessor):
    """Reduce the traceback of a failing graded test cell to its error message.

    nbgrader's ClearHiddenTests removes hidden tests from the cell's source, but a failing
    hidden assert's traceback still prints its own source lines. The student keeps the
    message (which says what was expected and what came) and loses only the traceback.
    """

    enabled = Bool(True).tag(config=True)  # nbconvert preprocessors are off unless enabled

    def preprocess_cell(self, cell, resources, index):  # noqa: D102 - nbconvert API
        if cell.cell_type == "code" and is_grade(cell):
            message = _message(cell)
            for output in cell.get("outputs", []):
                if output.get("output_type") == "error":
                    if output.get("ename") == HIDDEN_FAILED:
                        output["evalue"] = hidden_failure(output.get("evalue", ""))
                    output["traceback"] = [message or "a test failed"]
        return cell, resources


REVIEW_HOLD = "ReviewHold"  # course_tools.gradeexec.REVIEW_HOLD
WITHHELD = "[output withheld until an instructor reviews this submission: code before it was held for review]\n"


class WithholdAfterHold(Preprocessor):
    """A submission held for review (its code reached into the kernel's machinery: frames, the shell,
    builtins ...) shows no output from the held cell on: such code could have read what the tests hold
    and printed it in any form. Held tests keep only the grader's note. After ``--trust`` nothing is held."""

    enabled = Bool(True).tag(config=True)

    def preprocess(self, nb, resources):  # noqa: D102 - nbconvert API
        hold = nb.get("metadata", {}).get("course_hold")
        if not isinstance(hold, dict) or not hold.get("tests"):
            return nb, resources
        keys = [c.get("metadata", {}).get("nbgrader", {}).get("grade_id") or c.get("id") for c in nb.cells]
        start = keys.index(hold.get("cell")) if hold.get("cell") in keys else 0
        for cell in nb.cells[start:]:
            if cell.cell_type != "code" or not cell.get("outputs"):
                continue
            notes = [o for o in cell.outputs if o.get("output_type") == "error" and o.get("ename") == REVIEW_HOLD]
            if notes:
                cell.outputs = notes[:1]
            else:
                cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text=WITHHELD)]
        return nb, resources


# output types a feedback page may show as they are; HTML and markdown are sanitised, the rest dropped
# (JavaScript, SVG, widget views, anything else a browser could run)
SAFE_DATA = {"text/plain", "image/png", "image/jpeg", "image/gif", "text/latex"}


def safe_html(html: str) -> str:
    """HTML with every script, event handler, ``javascript:`` link, style and form removed (nh3, the
    maintained Rust sanitiser ammonia): what remains is text, tables, links and images."""
    import nh3

    return nh3.clean(html, url_schemes={"http", "https", "mailto"})


def safe_markdown(text: str) -> str:
    """Markdown rendered as the page would render it, then sanitised (links are checked after rendering)."""
    from nbconvert.filters.markdown_mistune import markdown2html_mistune

    return safe_html(markdown2html_mistune(text))


class SanitiseOutputs(Preprocessor):
    """Nothing a submission wrote runs in the page that shows it: HTML and markdown outputs and the
    student's markdown answers are sanitised (``safe_html``), JavaScript, SVG and widget outputs are
    dropped with a note; figures (PNG, JPEG) and text stay. Test messages are escaped by the template."""

    enabled = Bool(True).tag(config=True)

    def preprocess_cell(self, cell, resources, index):  # noqa: D102 - nbconvert API
        meta = cell.get("metadata", {}).get("nbgrader", {})
        if cell.cell_type == "markdown" and meta.get("solution"):
            # the student's written answer: shown as sanitised HTML
            cell.source = safe_markdown(cell.source)
            cell.attachments = {}
        if cell.cell_type == "raw":
            cell.source = safe_html(cell.source)
        for output in cell.get("outputs", []):
            data = output.get("data")
            if not isinstance(data, dict):
                continue
            clean = {key: value for key, value in data.items() if key in SAFE_DATA}
            if "text/html" in data:
                clean["text/html"] = safe_html(_joined(data["text/html"]))
            elif "text/markdown" in data:
                clean["text/html"] = safe_markdown(_joined(data["text/markdown"]))
            if not clean:
                clean["text/plain"] = f"[an output of type {', '.join(sorted(data))[:80]} is not shown in feedback]"
            output["data"] = clean
            if "metadata" in output:
                output["metadata"] = {k: v for k, v in output["metadata"].items() if k in clean and isinstance(v, dict)}
        return cell, resources


def _joined(value) -> str:
    return "".join(value) if isinstance(value, list) else str(value)


# nbconvert's MathJax macro loads MathJax from this address; the course's feedback template swaps it
CDN_MATHJAX = "https://cdnjs.cloudflare.com/ajax/libs/mathjax/2.7.7/latest.js?config=TeX-AMS_CHTML-full,Safe"
# the MathJax wheel carries only the STIX-Web fonts (as for the slides and the site)
MATHJAX_FONTS = ('<script type="text/x-mathjax-config">MathJax.Hub.Config({"HTML-CSS": {availableFonts: [], '
                 'preferredFont: null, webFont: "STIX-Web", imageFont: null}, SVG: {font: "STIX-Web"}});</script>\n'
                 "<!-- End of mathjax configuration -->")
SHOWN = ("Your notebook as it was graded, with its outputs. Each test shows its visible code; the hidden "
         "tests' code is never shown: the table gives every test by name, its points and, when it fails, "
         "its message.")


# the collapsed hints under an exercise's prompt (issue 39), in either edition: "Hint 1" / "提示 1"
HINT = re.compile(r"\n?<details><summary>(?:Hint|提示)\s*\d+</summary>(.*?)</details>\n?", re.S)


def split_hints(markdown: str) -> tuple[str, list[str]]:
    """A prompt without its collapsed hints, and the hints' texts in order."""
    hints = [h.strip() for h in HINT.findall(markdown)]
    return (HINT.sub("\n", markdown).rstrip() + "\n" if hints else markdown), hints


class DropHints(Preprocessor):
    """Feedback is about the graded run: the prompts' hints are the notebook's, not the page's."""

    enabled = Bool(True).tag(config=True)

    def preprocess_cell(self, cell, resources, index):  # noqa: D102 - nbconvert API
        if cell.cell_type == "markdown" and not cell.get("metadata", {}).get("nbgrader", {}).get("solution"):
            cell.source = split_hints(cell.source)[0]
        return cell, resources


class ShowEdition(Preprocessor):
    """The Chinese edition's feedback page shows its instructions in Chinese: ``course grade`` keeps the
    edition's translated markdown (from the course's catalogue, keyed by cell id) in the notebook's
    metadata, since nbgrader's autograde restores the release's own; it is put back here. A student's
    own markdown (a solution cell) is never replaced."""

    enabled = Bool(True).tag(config=True)

    def preprocess(self, nb, resources):  # noqa: D102 - nbconvert API
        translated = nb.metadata.pop("course_edition", None)
        if isinstance(translated, dict):
            for cell in nb.cells:
                text = translated.get(cell.get("id"))
                if (cell.cell_type == "markdown" and isinstance(text, str)
                        and not cell.get("metadata", {}).get("nbgrader", {}).get("solution")):
                    cell.source = text
        return nb, resources


# the page's own words, by the graded notebook's language (metadata.language: the Chinese edition says
# zh_CN); the tests' names and messages are the tests' own
PAGE_TEXT = {
    "en": {"html_lang": "en", "shown": SHOWN, "score": "Score", "test": "Test", "what": "What it checks",
           "points": "Points", "result": "Result", "passed": "passed", "failed": "failed",
           "hidden": "(hidden tests too)",
           "checked": ("{here} of these {total} points came from tests your own run could check in full; the other "
                       "{rest} also needed hidden tests, which only the grader runs (marked \u201chidden tests too\u201d).")},
    "zh_CN": {"html_lang": "zh-CN",
              "shown": ("这是你的笔记本评分时的样子，连同输出。每个测试显示其可见代码；隐藏测试的代码从不显示："
                        "下表列出每个测试的名称、分数，以及未通过时的提示信息。"),
              "score": "得分", "test": "测试", "what": "检查内容", "points": "分数", "result": "结果",
              "passed": "通过", "failed": "未通过", "hidden": "（另有隐藏测试）",
              "checked": ("这 {total} 分中，有 {here} 分来自你自己运行时就能完整检查的测试；其余 {rest} 分还需要"
                          "隐藏测试，只有评分程序会运行（标有“另有隐藏测试”）。")},
}


class SummariseTests(Preprocessor):
    """Gather, for the course's feedback template, every graded test: its name (grade id), what it checks
    (its docstring's first line), its score and points and, when it fails, its message. Runs after
    nbgrader's GetGrades (the scores) and ClearHiddenTests."""

    enabled = Bool(True).tag(config=True)
    mathjax_url = Unicode(CDN_MATHJAX, help="where the page loads MathJax from").tag(config=True)

    def preprocess(self, nb, resources):  # noqa: D102 - nbconvert API
        tests = []
        for cell in nb.cells:
            meta = cell.metadata.get("nbgrader", {})
            if cell.cell_type == "code" and is_grade(cell) and not meta.get("solution"):
                score, points = float(meta.get("score") or 0), float(meta.get("points") or 0)
                tests.append({"id": meta.get("grade_id", ""), "what": _what(cell.source), "score": score,
                              "points": points, "passed": score >= points, "message": _message(cell),
                              "hidden": bool(cell.metadata.pop("course_hidden_tests", False))})
        total, rest = sum(t["points"] for t in tests), sum(t["points"] for t in tests if t["hidden"])
        lang = nb.metadata.get("language") if nb.metadata.get("language") in PAGE_TEXT else "en"
        text = PAGE_TEXT[lang]
        checked = text["checked"].format(here=f"{total - rest:g}", total=f"{total:g}", rest=f"{rest:g}") if rest else ""
        resources["course"] = {"tests": tests, "shown": text["shown"], "checked": checked, "labels": text,
                               "lang": text["html_lang"], "mathjax_url": self.mathjax_url,
                               "cdn_mathjax": CDN_MATHJAX, "mathjax_fonts": MATHJAX_FONTS}
        return nb, resources


# ----------------------------------------------------------------------------- the page's template and MathJax
MATHJAX_DIR = "_mathjax"     # OUT/feedback/_mathjax, two folders above each page (<student>/<assignment>/)


# nbgrader's API insists on the template name "feedback": the course's folder of that name comes first,
# and its page (a file name of its own) extends nbgrader's feedback/index.html.j2, next on the path
FEEDBACK_TEMPLATE = {"template_name": "feedback", "template_file": "course_feedback.html.j2"}


def feedback_template_dirs() -> list[str]:
    """Template folders for the course's feedback page (``FEEDBACK_TEMPLATE``): the course's
    ``templates/feedback`` first, then nbgrader's own ``feedback``, which the page extends."""
    import nbgrader

    return [str(Path(__file__).parent / "templates"),
            str(Path(nbgrader.__file__).parent / "server_extensions" / "formgrader" / "templates")]


def _mathjax_source() -> Path | None:
    try:
        from course_tools.slides import mathjax_source
        return mathjax_source()
    except (ImportError, FileNotFoundError):      # jupyter-server-mathjax (the instructor extra) missing
        return None


def feedback_mathjax_url() -> str:
    """Where feedback pages load MathJax: from beside them when the course ships it, else the CDN."""
    if _mathjax_source() is None:
        return CDN_MATHJAX
    return f"../../{MATHJAX_DIR}/MathJax.js?config=TeX-AMS-MML_HTMLorMML-full,Safe"


def copy_feedback_mathjax(feedback: Path) -> None:
    """Put MathJax in ``feedback/_mathjax`` once, so that every page there typesets offline."""
    source = _mathjax_source()
    if source is not None and not (feedback / MATHJAX_DIR / "MathJax.js").is_file():
        shutil.copytree(source, feedback / MATHJAX_DIR, dirs_exist_ok=True)


def render_feedback_page(nb, notebook: str, score: float, max_score: float) -> str:
    """The feedback page of an already scored notebook (grade cells carry nbgrader's ``score``), rendered
    with the template, stylesheet and preprocessors that ``course grade``'s scratch configuration gives
    nbgrader's GenerateFeedback (without GetGrades and the gradebook): for previews and tests."""
    import nbgrader
    from nbconvert import HTMLExporter
    from traitlets.config import Config

    config = Config()
    for key, value in FEEDBACK_TEMPLATE.items():
        setattr(config.HTMLExporter, key, value)
    config.HTMLExporter.extra_template_basedirs = feedback_template_dirs()
    config.HTMLExporter.extra_template_paths = [str(Path(nbgrader.__file__).parent / "server_extensions" / "formgrader"
                                                    / "static" / "node_modules" / "bootstrap" / "dist" / "css")]
    config.SummariseTests.mathjax_url = feedback_mathjax_url()
    exporter = HTMLExporter(config=config)
    exporter.register_preprocessor(HideTestTracebacks(config=config), enabled=True)
    exporter.register_preprocessor(WithholdAfterHold(config=config), enabled=True)
    exporter.register_preprocessor(SanitiseOutputs(config=config), enabled=True)
    exporter.register_preprocessor(SummariseTests(config=config), enabled=True)
    html, _ = exporter.from_notebook_node(nb, resources={"nbgrader": {"notebook": notebook, "score": score,
                                                                      "max_score": max_score, "late_penalty": 0}})
    return html
