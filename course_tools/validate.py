"""``course validate``: run a notebook and report each graded test cell, as nbgrader will grade it.

It runs the notebook the way JupyterLab's *Validate* button does (nbgrader's ``Validator``
pipeline: ``CheckCellMetadata``, ``ClearOutput``, ``Execute``, configured by the course's
``nbgrader_config.py``) and scores every graded cell with nbgrader's own rule,
``nbgrader.utils.determine_grade``, which ``course grade`` applies too: an error or anything
written to stderr scores 0; a cell whose value is a number scores that number (partial credit);
otherwise full points. A test cell that also holds hidden tests (listed in the release's
``course.hidden_tests``) can still lose its points when graded: the report says how many points
a run here checked in full (``checked_here``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import nbformat
from nbgrader.utils import is_grade, is_solution


@dataclass
class CellResult:
    """One graded test cell after execution."""

    grade_id: str
    points: float
    passed: bool
    error: str = ""
    score: float | None = None  # what nbgrader gives the cell (None: it did not run)
    hidden: bool = False  # the graded cell also holds hidden tests, which only the grader runs

    def __post_init__(self) -> None:
        if self.score is None and self.passed:
            self.score = self.points


def graded_cells(nb: nbformat.NotebookNode) -> list[nbformat.NotebookNode]:
    """Return the notebook's autograded test cells (nbgrader ``grade`` code cells)."""
    return [
        c for c in nb.cells
        if c.cell_type == "code" and is_grade(c) and not is_solution(c)
    ]


def _why(cell: nbformat.NotebookNode, score: float, points: float) -> str:
    """What made nbgrader give less than full points, in one line."""
    for output in cell.get("outputs", []):
        if output.get("output_type") == "error":
            return f"{output.get('ename', 'Error')}: {output.get('evalue', '')}".strip().rstrip(":")[:300]
        if output.get("output_type") == "stream" and output.get("name") == "stderr":
            text = output.get("text", "")
            text = "".join(text) if isinstance(text, list) else text
            first = next((line for line in text.splitlines() if line.strip()), "")
            return f"wrote to stderr (nbgrader scores that 0): {first.strip()[:200]}"
        if output.get("output_type") == "execute_result":
            return f"the cell's value is {score:g}, which nbgrader takes as partial credit ({score:g}/{points:g})"
    return ""


def score_cell(cell: nbformat.NotebookNode) -> CellResult:
    """Score one executed graded cell with nbgrader's rule."""
    from nbgrader.utils import determine_grade

    meta = cell.metadata["nbgrader"]
    points = float(meta.get("points", 0))
    if cell.get("execution_count") is None and not cell.get("outputs"):
        return CellResult(meta.get("grade_id", "?"), points, False, "cell did not run", 0.0)
    from course_tools.gradeexec import errors_first

    cell = nbformat.from_dict(dict(cell, outputs=errors_first(cell.get("outputs", []))))  # as course grade does
    try:
        score, _ = determine_grade(cell, logging.getLogger("course.validate"))
    except Exception as error:  # a malformed value: nbgrader would fail on it too
        return CellResult(meta.get("grade_id", "?"), points, False, f"cannot be scored: {error}", 0.0)
    score = float(score or 0)
    return CellResult(meta.get("grade_id", "?"), points, score >= points, "" if score >= points else
                      _why(cell, score, points), score)


def results(nb: nbformat.NotebookNode) -> list[CellResult]:
    """Return nbgrader's score for every graded cell of an executed notebook; ``hidden``: the release
    says the cell has hidden tests, and they are not here (a solution notebook runs its own)."""
    from course_tools.release import HIDDEN_MARK

    listed = nb.get("metadata", {}).get("course", {}).get("hidden_tests") or []
    listed = set(listed) if isinstance(listed, list) else set()
    out = []
    for cell in graded_cells(nb):
        result = score_cell(cell)
        result.hidden = result.grade_id in listed and HIDDEN_MARK not in cell.source
        out.append(result)
    return out


# What `course validate` and the Validate button say, by the notebook's language (metadata.language: the
# Chinese edition says zh_CN). The tests' own messages are the tests'.
TEXT = {
    "en": {"PASS": "PASS", "PART": "PART", "FAIL": "FAIL", "none": "no graded test cells found",
           "score": "score {earned}/{total} ({passed} of {count} tests pass)", "more": " and {n} more",
           "checked": ("{here} of {total} points checked here in full; the other {rest} ({names}) also need hidden "
                       "tests that only the grader runs, so passing here is not yet full marks"),
           "button": ("{earned} / {total} points: {failing} of {count} tests fail (`course validate` in a terminal "
                      "prints the same table)")},
    "zh_CN": {"PASS": "通过", "PART": "部分", "FAIL": "未过", "none": "没有找到计分测试单元",
              "score": "得分 {earned}/{total}（{count} 个测试中 {passed} 个通过）", "more": " 等另外 {n} 个",
              "checked": ("这 {total} 分中有 {here} 分在这里完整检查过；其余 {rest} 分（{names}）还需要只有评分程序才运行"
                          "的隐藏测试，所以这里全部通过还不等于满分"),
              "button": "{earned} / {total} 分：{count} 个测试中 {failing} 个未通过（在终端运行 `course validate` 会打印同样的表）"},
}


def text_for(nb_or_lang) -> dict[str, str]:
    """The strings for a notebook (its metadata.language) or a language code; English otherwise."""
    lang = nb_or_lang if isinstance(nb_or_lang, str) or nb_or_lang is None else \
        nb_or_lang.get("metadata", {}).get("language")
    return TEXT.get(lang, TEXT["en"]) if isinstance(lang, str) else TEXT["en"]


def checked_here(items: list[CellResult], lang: str | None = None) -> str:
    """How many points a run here checked in full, and which tests also hold hidden tests ('' if none)."""
    hidden = [r for r in items if r.hidden]
    if not hidden:
        return ""
    text = text_for(lang)
    total = sum(r.points for r in items)
    rest = sum(r.points for r in hidden)
    names = ", ".join(r.grade_id for r in hidden[:4]) + (text["more"].format(n=len(hidden) - 4) if len(hidden) > 4 else "")
    return text["checked"].format(here=f"{total - rest:g}", total=f"{total:g}", rest=f"{rest:g}", names=names)


def _course_config(root: Path | None, timeout: int | None):
    from traitlets.config import Config

    config = Config()
    if root is not None and (root / "nbgrader_config.py").is_file():
        from course_tools.grading import course_config

        config = course_config(root)
    if timeout is not None:
        config.Execute.timeout = int(timeout)
    return config


class CellProgress:
    """Cells run / total while a notebook runs: a bar on a terminal; in a log, a line for each slow cell."""

    SLOW = 10.0  # seconds: a cell this long gets its own line when there is no bar

    def __init__(self, nb: nbformat.NotebookNode, stream=None) -> None:
        import sys
        import time

        self.stream = stream or sys.stdout
        self.total = sum(c.cell_type == "code" for c in nb.cells)
        self.done, self.clock, self.started = 0, time.perf_counter, None
        self.bar = None
        if self.stream.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=self.total, unit="cell", desc="running", file=self.stream, dynamic_ncols=True)

    def __deepcopy__(self, memo):  # traitlets deep-copies configured values: keep this one object
        return self

    def __call__(self, cell=None, cell_index=None, **_) -> None:
        """A cell starts (nbclient's on_cell_execute): the one before it has finished."""
        self._finished()
        self.started = self.clock()

    def _finished(self) -> None:
        if getattr(self, "started", None) is None:
            return
        self.done += 1
        took = self.clock() - self.started
        self.started = None
        if self.bar is not None:
            self.bar.update(1)
        elif took >= self.SLOW:
            print(f"  cell {self.done} of {self.total} took {took:.0f} s", file=self.stream, flush=True)

    def close(self) -> None:
        self._finished()
        if self.bar is not None:
            self.bar.close()


def execute(nb: nbformat.NotebookNode, cwd: Path, timeout: int | None = None, root: Path | None = None,
            kernel_name: str | None = None, progress: CellProgress | None = None) -> nbformat.NotebookNode:
    """Run every cell as nbgrader's Validator does (continuing past errors) in ``cwd``."""
    from nbgrader import utils
    from nbgrader.validator import Validator

    config = _course_config(root, timeout)
    if kernel_name:
        config.Execute.kernel_name = kernel_name
    if progress is not None:
        config.Execute.on_cell_execute = progress  # a cell starts (nbgrader uses on_cell_executed itself)
    validator = Validator(config=config)
    try:
        with utils.chdir(str(cwd)):
            return validator._preprocess(nb)
    finally:
        if progress is not None:
            progress.close()


def assignment_of(nb: nbformat.NotebookNode, root: Path) -> str | None:
    """The assignment whose release shares the most graded and answer cells with ``nb``."""
    from course_tools.build import list_assignments

    def keys(notebook) -> set[str]:
        return {c.get("metadata", {}).get("nbgrader", {}).get("grade_id") for c in notebook.cells
                if c.get("metadata", {}).get("nbgrader", {}).get("grade_id")}

    mine = keys(nb)
    best, overlap = None, 0
    for assignment in list_assignments(root):
        release = root / "notebooks" / assignment / f"{assignment}.ipynb"
        if release.is_file():
            shared = len(mine & keys(nbformat.read(release, as_version=4)))
            if shared > overlap:
                best, overlap = assignment, shared
    return best


def check_assignment(path: Path, nb: nbformat.NotebookNode, root: Path | None) -> None:
    """Raise ValueError when the notebook is another assignment's than its file or folder says."""
    if root is None:
        return
    from course_tools.build import list_assignments

    known = list_assignments(root)
    expected = next((name for name in (path.stem, path.parent.name) if name in known), None)
    if expected is None:
        return
    actual = assignment_of(nb, root)
    if actual != expected:
        found = f"it holds the {actual} notebook" if actual else "none of its graded cells belong to the course"
        raise ValueError(f"{path} is named for {expected}, but {found}; open notebooks/{expected}/{expected}.ipynb")


def _root_for(path: Path) -> Path | None:
    from course_tools.build import repo_root

    for start in (path.parent, Path.cwd()):
        try:
            return repo_root(start)
        except FileNotFoundError:
            continue
    return None


def validate(path: Path, timeout: int | None = None, root: Path | None = None) -> list[CellResult]:
    """Run the notebook at ``path`` (not modified on disk) and return nbgrader's score of each test."""
    path = Path(path)
    nb = nbformat.read(path, as_version=4)
    root = root or _root_for(path.resolve())
    check_assignment(path, nb, root)
    return results(execute(nb, cwd=path.parent.resolve(), timeout=timeout, root=root))


def report(items: list[CellResult], lang: str | None = None) -> str:
    """Format results as a table a student reads at a glance (in LANG: the notebook's language)."""
    text = text_for(lang)
    if not items:
        return text["none"]
    width = max(len(r.grade_id) for r in items)
    lines = []
    for r in items:
        mark = text["PASS"] if r.passed else (text["PART"] if r.score else text["FAIL"])
        line = f"{mark}  {r.grade_id:<{width}}  {r.score or 0:g}/{r.points:g}"
        lines.append(line + (f"   {r.error}" if not r.passed else ""))
    earned = sum(r.score or 0 for r in items)
    total = sum(r.points for r in items)
    lines.append(text["score"].format(earned=f"{earned:g}", total=f"{total:g}", passed=sum(r.passed for r in items),
                                      count=len(items)))
    if checked_here(items, lang):
        lines.append(checked_here(items, lang))
    return "\n".join(lines)
