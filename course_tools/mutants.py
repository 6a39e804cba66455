"""``course mutants``: do the graded tests catch the mistakes students plausibly make?

Each assignment lists its plausible mistakes in ``nbsource/NN_topic/mistakes.toml`` (instructor
material: it never reaches ``solutions/``, the release or feedback)::

    [[mistake]]
    cell = "scaled_dot_product_attention"      # the solution cell it changes
    name = "no 1/sqrt(d_k) scale"              # what a student did
    replace = "/ math.sqrt(d_k)"               # text of the solution cell (must occur exactly once) ...
    by = ""                                    # ... and what the student wrote instead
    # rerun = ["cell_id", ...]                 # cells to run again with the mistake before the tests
    # tests = ["test_id", ...]                 # default: the graded cells between this solution and the next
    # uncatchable = "one line: why no test can catch it without a new requirement"
    # message = "which dimension"              # words the first failing visible test's message must hold
    # hidden_only = "why no visible test can see it (e.g. it shows only on the grader's larger case)"

The runner starts **one kernel** per notebook and runs the solution notebook once, from the top to
the last cell any mistake needs. Then, for each mistake: it runs the mutated solution cell, the
``rerun`` cells and the tests, up to the first test that nbgrader would score below full points.
Then it restores the original cell, runs again every cell that ran with the mistake, and checks
that they pass; at the end every test runs once more. A mistake whose effect outlives its
restoration (a leak into the next one) stops the run with an error instead of a score.

A test cell runs as the grader runs it: its visible code first, then its hidden blocks. The report
gives, for each mistake, what the student sees: the first failing visible test's message (or that
only a hidden test caught it). A message that is only a bare exception or a tensor comparison
(``Tensor-likes are not close!``) does not diagnose the mistake; where a mistake lists ``message``,
the words must be in it, or the mistake fails.
"""

from __future__ import annotations

import os
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
from nbgrader.utils import is_grade, is_solution

MISTAKES_FILE = "mistakes.toml"


@dataclass(frozen=True)
class Mistake:
    cell: str
    name: str
    replace: str
    by: str
    rerun: tuple[str, ...] = ()
    tests: tuple[str, ...] = ()
    uncatchable: str = ""
    message: str = ""
    hidden_only: str = ""  # why only a hidden test catches it: the student's visible tests cannot


# what a failing test says when it says nothing of the mistake
BARE = ("Tensor-likes are not close", "Tensor-likes are not equal", "Scalars are not close", "Scalars are not equal")


def is_bare(message: str) -> bool:
    """A message that names no property: an exception with no text, or a bare tensor comparison."""
    kind, _, text = message.partition(":")
    return not text.strip() or text.strip().startswith(BARE)


@dataclass
class Outcome:
    mistake: Mistake
    caught_by: list[str] = field(default_factory=list)
    seconds: float = 0.0
    message: str = ""  # what the student sees: the first failing visible test's (or their cell's) error
    visible: bool = False  # a visible test (or the mistaken cell itself) failed, not only a hidden one

    @property
    def caught(self) -> bool:
        return bool(self.caught_by)

    @property
    def diagnosed(self) -> bool:
        """Caught by a visible test whose message says something (and holds the listed words)."""
        return self.caught and self.visible and not is_bare(self.message) and self.message_ok

    @property
    def message_ok(self) -> bool:
        """The listed words (``message``), if any, are in what the student sees."""
        wanted = self.mistake.message.strip().lower()
        return not wanted or (self.visible and wanted in self.message.lower())


@dataclass
class Report:
    assignment: str
    outcomes: list[Outcome]
    uncatchable: list[Mistake]
    setup_seconds: float
    seconds: float

    @property
    def score(self) -> float:
        return sum(o.caught for o in self.outcomes) / len(self.outcomes) if self.outcomes else 1.0

    @property
    def diagnosed(self) -> int:
        return sum(o.diagnosed for o in self.outcomes)

    @property
    def wrong_messages(self) -> list[Outcome]:
        """Mistakes that list the words of their message, and whose student saw other words."""
        return [o for o in self.outcomes if not o.message_ok]

    @property
    def undiagnosed(self) -> list[Outcome]:
        """Mistakes a student is not taught by: caught, but neither named by a visible test's message with the
        words its entry lists (``message``) nor given a reason why only a hidden test can (``hidden_only``)."""
        return [o for o in self.outcomes if o.caught and not o.mistake.hidden_only.strip()
                and not (o.diagnosed and o.mistake.message.strip())]

    @property
    def unexplained_hidden(self) -> list[Outcome]:
        """Mistakes only a hidden test catches, with no ``hidden_only`` reason in the list."""
        return [o for o in self.outcomes if o.caught and not o.visible and not o.mistake.hidden_only.strip()]

    def table(self) -> str:
        width = max([len(o.mistake.cell) for o in self.outcomes] + [8])
        share = self.diagnosed / len(self.outcomes) if self.outcomes else 1.0
        lines = [f"{self.assignment}: {len(self.outcomes)} mistakes, "
                 f"{sum(o.caught for o in self.outcomes)} caught ({self.score:.0%}), "
                 f"{self.diagnosed} diagnosed by a visible test's message ({share:.0%}), "
                 f"{sum(o.caught and not o.visible for o in self.outcomes)} caught by hidden tests only "
                 f"({len(self.unexplained_hidden)} with no reason listed); "
                 f"first run {self.setup_seconds:.0f} s, all {self.seconds:.0f} s"]
        for o in self.outcomes:
            verdict = f"caught by {', '.join(o.caught_by)}" if o.caught else "MISSED"
            if o.caught and not o.visible:
                verdict += " (hidden test only" + (f": {o.mistake.hidden_only})" if o.mistake.hidden_only.strip()
                                                   else ", NO REASON listed: hidden_only = ...)")
            lines.append(f"  {o.mistake.cell:<{width}}  {o.mistake.name[:60]:<60}  {verdict} ({o.seconds:.1f} s)")
            if o.caught and o.visible:
                said = " ".join(o.message.split())
                flag = ("WRONG MESSAGE, wants " + repr(o.mistake.message) + ": ") if not o.message_ok else \
                    ("bare: " if is_bare(o.message) else "")
                lines.append(f"  {'':<{width}}    says: {flag}{said[:150]}{'...' if len(said) > 150 else ''}")
            elif not o.message_ok:
                lines.append(f"  {'':<{width}}    WRONG MESSAGE: wants {o.mistake.message!r} from a visible test")
        for m in self.uncatchable:
            lines.append(f"  {m.cell:<{width}}  {m.name[:60]:<60}  not listed: {m.uncatchable}")
        return "\n".join(lines)


class MistakeListError(ValueError):
    """The list does not match the notebook (an unknown cell, a text that is not there)."""


def mistakes_path(root: Path, assignment: str) -> Path:
    return root / "nbsource" / assignment / MISTAKES_FILE


def load_mistakes(path: Path) -> list[Mistake]:
    if not path.is_file():
        raise FileNotFoundError(f"no list of mistakes at {path}")
    entries = tomllib.loads(path.read_text(encoding="utf-8")).get("mistake", [])
    mistakes = []
    for number, entry in enumerate(entries, 1):
        missing = {"cell", "name", "replace", "by"} - set(entry)
        if missing:
            raise MistakeListError(f"{path.name}, mistake {number}: missing {', '.join(sorted(missing))}")
        mistakes.append(Mistake(entry["cell"], entry["name"], entry["replace"], entry["by"],
                                tuple(entry.get("rerun", ())), tuple(entry.get("tests", ())),
                                entry.get("uncatchable", ""), entry.get("message", ""),
                                entry.get("hidden_only", "")))
    return mistakes


def _plan(nb: nbformat.NotebookNode, mistakes: list[Mistake]) -> dict[Mistake, tuple[str, ...]]:
    """Check every mistake against the notebook; return the tests each one runs."""
    cells = {c.id: (i, c) for i, c in enumerate(nb.cells)}
    solutions = [i for i, c in enumerate(nb.cells) if c.cell_type == "code" and is_solution(c)]
    plan = {}
    for m in mistakes:
        if m.cell not in cells or not is_solution(cells[m.cell][1]):
            raise MistakeListError(f"{m.name!r}: {m.cell!r} is not a solution cell of the notebook")
        index, cell = cells[m.cell]
        found = cell.source.count(m.replace)
        if found != 1:
            raise MistakeListError(f"{m.name!r}: {m.replace!r} occurs {found} times in cell {m.cell!r}, not once")
        for other in (*m.rerun, *m.tests):
            if other not in cells or cells[other][1].cell_type != "code":
                raise MistakeListError(f"{m.name!r}: no code cell {other!r}")
        if m.tests:
            tests = m.tests
        else:
            following = [i for i in solutions if i > index]
            end = following[0] if following else len(nb.cells)
            tests = tuple(c.id for c in nb.cells[index + 1:end] if c.cell_type == "code" and is_grade(c))
        if not tests and not m.uncatchable:
            raise MistakeListError(f"{m.name!r}: no graded test follows cell {m.cell!r}")
        plan[m] = tests
    return plan


def _said(cell: nbformat.NotebookNode) -> str:
    """What a failing cell tells the student: its error (``Kind: message``), or what it wrote to stderr."""
    for output in cell.get("outputs", []):
        if output.get("output_type") == "error":
            return f"{output.get('ename', 'Error')}: {output.get('evalue', '')}".strip()
    for output in cell.get("outputs", []):
        if output.get("output_type") == "stream" and output.get("name") == "stderr":
            text = output.get("text", "")
            return "stderr: " + ("".join(text) if isinstance(text, list) else text).strip()
    return ""


def _failed(cell: nbformat.NotebookNode) -> bool:
    """Would nbgrader score this executed cell below full points (an error, or stderr)?"""
    for output in cell.get("outputs", []):
        if output.get("output_type") == "error":
            return True
        if output.get("output_type") == "stream" and output.get("name") == "stderr":
            return True
    return False


def run_mistakes(root: Path, assignment: str, names: list[str] | None = None, timeout: int = 600,
                 progress: bool = True, whole: bool = False) -> Report:
    """Run every listed mistake of ``assignment`` against its graded tests (see the module's docstring).

    ``whole``: the first run goes to the end of the notebook, as nbval would (every cell must run
    without an error, every graded cell must score full points); the test suite uses it, so that
    each solution notebook runs once in CI, for both checks."""
    from nbclient import NotebookClient

    started = time.perf_counter()
    notebook = root / "solutions" / assignment / f"{assignment}.ipynb"
    if not notebook.is_file():
        raise FileNotFoundError(f"no solution notebook {notebook.relative_to(root)}")
    nb = nbformat.read(notebook, as_version=4)
    listed = load_mistakes(mistakes_path(root, assignment))
    if names:
        listed = [m for m in listed if any(n in m.name for n in names)]
    uncatchable = [m for m in listed if m.uncatchable]
    mistakes = [m for m in listed if not m.uncatchable]
    plan = _plan(nb, mistakes)
    by_id = {c.id: (i, c) for i, c in enumerate(nb.cells)}
    needed = [by_id[i][0] for m, tests in plan.items() for i in (m.cell, *m.rerun, *tests)]
    last = len(nb.cells) - 1 if whole else max(needed, default=-1)
    os.environ.setdefault("MPLBACKEND", "Agg")
    client = NotebookClient(nb, timeout=timeout, allow_errors=True, interrupt_on_timeout=True,
                            kernel_name=nb.metadata.get("kernelspec", {}).get("name", "python3"),
                            resources={"metadata": {"path": str(notebook.parent)}})

    def run_copy(cell_id: str, source: str | None = None) -> tuple[bool, nbformat.NotebookNode]:
        """Run a cell (optionally with another source) on a copy; True when it would score full points
        (graded cells: no error and no stderr, as nbgrader scores them; other cells: no error)."""
        index, cell = by_id[cell_id]
        copy = nbformat.from_dict(dict(cell, outputs=[], source=cell.source if source is None else source))
        client.execute_cell(copy, index)
        if is_grade(cell) or source is not None:
            return not _failed(copy), copy
        return not any(output.get("output_type") == "error" for output in copy.get("outputs", [])), copy

    def run(cell_id: str, source: str | None = None) -> bool:
        return run_copy(cell_id, source)[0]

    def run_plain(cell_id: str) -> tuple[bool, bool, str]:
        """Rerun a cell that is not a test (it failed: what its error tells the student)."""
        ok, copy = run_copy(cell_id)
        return ok, True, "" if ok else _said(copy)

    def run_as_graded(cell_id: str, source: str | None = None) -> tuple[bool, bool, str]:
        """Run a test cell as the grader does (visible code, then each hidden block): (passed, a visible
        part failed, what that part said)."""
        from course_tools.gradeexec import split_hidden

        index, cell = by_id[cell_id]
        for hidden, text in split_hidden(cell.source if source is None else source):
            copy = nbformat.from_dict(dict(cell, outputs=[], source=text))
            client.execute_cell(copy, index)
            if _failed(copy):
                return False, not hidden, "" if hidden else _said(copy)
        return True, False, ""

    outcomes = []
    with client.setup_kernel():
        code = [c for c in nb.cells[:last + 1] if c.cell_type == "code"]
        for number, cell in enumerate(code, 1):
            if progress:
                print(f"\r{assignment}: first run, cell {number}/{len(code)} ({cell.id})".ljust(79), end="", flush=True)
            if not run(cell.id):
                raise RuntimeError(f"the solution notebook fails at cell {cell.id!r}: fix it before listing mistakes")
        setup = time.perf_counter() - started
        if progress:
            print()
        for number, m in enumerate(mistakes, 1):
            begin = time.perf_counter()
            if progress:
                print(f"\r{assignment}: mistake {number}/{len(mistakes)}: {m.name[:50]}".ljust(79), end="", flush=True)
            outcome = Outcome(m)
            mutated = by_id[m.cell][1].source.replace(m.replace, m.by)
            ran = []
            passed, visible, said = run_as_graded(m.cell, mutated)
            if not passed:
                outcome.caught_by.append(f"{m.cell} (the mistaken cell itself fails)")
                outcome.visible, outcome.message = True, said
            else:
                for other in (*m.rerun, *plan[m]):      # the first failure is enough
                    ran.append(other)
                    passed, visible, said = run_as_graded(other) if is_grade(by_id[other][1]) else run_plain(other)
                    if not passed:
                        outcome.caught_by.append(other)
                        outcome.visible, outcome.message = visible, said
                        break
            # undo: the original cell, then every cell that ran with the mistake, which must pass again
            restored = run(m.cell) and all([run(c) for c in ran])
            if not restored:
                raise RuntimeError(f"after restoring the solution from {m.name!r}, its tests no longer pass: "
                                   f"the mistake leaked into the kernel (make the tests or rerun cells independent)")
            outcome.seconds = time.perf_counter() - begin
            outcomes.append(outcome)
        if progress:
            print()
        every_test = dict.fromkeys(t for m in mistakes for t in plan[m])
        broken = [t for t in every_test if not run(t)]
        if broken:
            raise RuntimeError(f"after every mistake was restored, {', '.join(broken)} no longer pass: a mistake "
                               f"changed state that restoring its own cell does not reset")
    return Report(assignment, outcomes, uncatchable, setup, time.perf_counter() - started)
