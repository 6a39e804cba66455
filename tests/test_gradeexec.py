"""GuardedExecute on its own: the runtime probe, review holds and replays that lose nothing.

These run small notebooks in a plain local kernel (no sandbox, no nbgrader command line), so
that each guard is checked alone: the static scan is bypassed on purpose (no cell carries a
``course_hold``), and only the probe can see what a student cell did.
"""

from __future__ import annotations

import nbformat
import pytest

from course_tools.gradeexec import CELL_STUCK, REVIEW_HOLD, GuardedExecute
from course_tools.integrity import mark_holds

pytestmark = pytest.mark.slow  # each test starts a kernel


def _cell(source: str, kind: str = "locked", points: int = 1) -> nbformat.NotebookNode:
    cell = nbformat.v4.new_code_cell(source)
    if kind == "test":
        cell.metadata["nbgrader"] = {"grade": True, "solution": False, "locked": True, "points": points,
                                     "grade_id": f"test{id(cell) % 10_000}", "schema_version": 3}
    elif kind == "answer":
        cell.metadata["nbgrader"] = {"grade": False, "solution": True, "locked": False,
                                     "grade_id": f"answer{id(cell) % 10_000}", "schema_version": 3}
    elif kind == "locked":
        cell.metadata["nbgrader"] = {"grade": False, "solution": False, "locked": True,
                                     "grade_id": f"locked{id(cell) % 10_000}", "schema_version": 3}
    return cell


def run(cells, **settings) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook(cells=cells)
    mark_holds(nb, [])  # the protected names, as the grader records them; no static holds
    settings = {"timeout": 20, "notebook_timeout": 120, "interrupt_grace": 3, "kernel_name": "python3", **settings}
    GuardedExecute(**settings).preprocess(nb, {})
    return nb


def _errors(cell) -> list[str]:
    return [o.get("ename") for o in cell.outputs if o.get("output_type") == "error"]


SETUP = "import math\ndef check(value, expected):\n    assert abs(value - expected) < 1e-9, f'expected {expected}, got {value}'"

TRICKS = {
    "input transformer": "get_ipython().input_transformers_cleanup.append(lambda lines: ['pass\\n'])",
    "AST transformer": "import ast\nclass T(ast.NodeTransformer):\n    def visit_Assert(self, node):\n"
                       "        return ast.Pass()\nget_ipython().ast_transformers.append(T())",
    "custom exception handler": "get_ipython().set_custom_exc((AssertionError,), lambda *a, **k: None)",
    "showtraceback": "get_ipython().showtraceback = lambda *a, **k: None",
    "trace hook": "import sys\nsys.settrace(lambda *a: None)",
    "event callback": "get_ipython().events.register('pre_run_cell', lambda *a: None)",
    "builtin": "import builtins\nbuiltins.abs = lambda x: 0",
    "locked name": "def check(value, expected):\n    return None",
    "module function": "math.isclose = lambda *a, **k: True",
    "tensor method": "import torch\ntorch.Tensor.allclose = lambda *a, **k: True",
}


@pytest.mark.parametrize("trick", sorted(TRICKS))
def test_the_probe_holds_tests_after_a_change(trick):
    cells = [_cell(SETUP), _cell("check(1 + 1, 2)", "test"), _cell(TRICKS[trick], "added"),
             _cell("check(2 + 2, 4)", "test"), _cell("print('after')")]
    cells[2].metadata["course_added"] = True
    nb = run(cells)
    assert REVIEW_HOLD not in _errors(nb.cells[1]), "the test before the change keeps its result"
    assert _errors(nb.cells[3]) == [REVIEW_HOLD], f"{trick}: the test after the change must be held"
    assert nb.metadata["course_hold"]["reason"].startswith("cell changed how later cells run")


def test_honest_student_code_is_not_held():
    honest = ("import torch\nclass Net(torch.nn.Module):\n    def __init__(self):\n        super().__init__()\n"
              "        self.w = torch.nn.Linear(2, 2)\nx = Net()(torch.ones(1, 2)).sum()\nimport math as m\n"
              "values = [abs(v) for v in range(3)]\nprint(sorted(values))")
    cells = [_cell(SETUP), _cell(honest, "answer"), _cell("check(math.sqrt(4), 2)", "test")]
    nb = run(cells)
    assert _errors(nb.cells[2]) == [] and "course_hold" not in nb.metadata


def test_a_static_hold_marks_the_tests_after_its_cell():
    cells = [_cell(SETUP), _cell("x = 1", "answer"), _cell("check(1, 1)", "test")]
    cells[1].metadata["course_hold"] = "changes how cells run: uses get_ipython"
    nb = run(cells)
    assert _errors(nb.cells[2]) == [REVIEW_HOLD]
    nb = run(cells, holds=False)  # an instructor looked (course grade --trust)
    assert _errors(nb.cells[2]) == []


def test_a_replay_keeps_every_first_result(tmp_path):
    """A cell that ignores its interrupt is killed; the replay of earlier cells cannot finish (the
    second run of `slow` blocks), yet every earlier verdict stands and later cells still run."""
    marker = tmp_path / "ran-once"
    slow = f"import os, time\nif os.path.exists({str(marker)!r}):\n    time.sleep(1000)\nopen({str(marker)!r}, 'w').close()"
    resist = "import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nwhile True:\n    pass"
    cells = [_cell(SETUP), _cell("check(1, 1)", "test", 2), _cell(slow), _cell(resist, "answer"),
             _cell("check(2, 2)", "test", 3), _cell("print('end')")]
    nb = run(cells, timeout=4)
    assert _errors(nb.cells[1]) == [], "the test that passed before the stuck cell keeps its points"
    assert _errors(nb.cells[2]) == [], "the first run of `slow` is its verdict, not the replay's"
    assert _errors(nb.cells[3]) == [CELL_STUCK] or CELL_STUCK in _errors(nb.cells[3])
    assert _errors(nb.cells[4]) == [], "the tests after the stuck cell run in a fresh kernel"
    assert "end" in "".join(o.get("text", "") for o in nb.cells[5].outputs)


def test_the_notebook_deadline_never_erases_earlier_results(tmp_path):
    resist = "import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nwhile True:\n    pass"
    cells = [_cell(SETUP), _cell("check(1, 1)", "test"), _cell("import time\ntime.sleep(1)"), _cell(resist, "answer"),
             _cell("check(2, 2)", "test")]
    # the first pass ends near the deadline (4 s limit + 3 s grace), so the replay runs into it wherever it
    # falls; the assertions hold whatever the replay reached
    nb = run(cells, timeout=4, notebook_timeout=12, probe=False)
    assert _errors(nb.cells[1]) == [] and _errors(nb.cells[2]) == []
    assert _errors(nb.cells[4]) in (["NotebookTimeout"], []), nb.cells[4].outputs



def test_a_cell_stopped_by_the_notebook_deadline_is_reported_as_the_notebook_limit(tmp_path):
    from course_tools.grading import GradeRow, note_guards

    loop = "while True:\n    pass"
    cells = [_cell(SETUP), _cell(loop, "answer"), _cell("check(1, 1)", "test")]
    # the cell's own limit (60 s) is never reached: the notebook's (10 s) stops the loop, and the test
    # after it starts with less than a second left, so it is not run
    nb = run(cells, timeout=60, notebook_timeout=10, probe=False)
    assert _errors(nb.cells[1]) == ["KeyboardInterrupt", "NotebookTimeout"], nb.cells[1].outputs
    assert _errors(nb.cells[2]) == ["NotebookTimeout"], nb.cells[2].outputs
    row = GradeRow("s", "a")
    note_guards(row, nb)
    assert "notebook time limit reached: 2 cell(s) stopped or not run" in row.reason, row.reason
    assert "cell time limit" not in row.reason, row.reason
    # a cell stopped by its own limit, with time left in the notebook, is a cell limit
    nb = run([_cell(SETUP), _cell(loop, "answer"), _cell("check(1, 1)", "test")], timeout=3,
             notebook_timeout=60, probe=False)
    assert _errors(nb.cells[1]) == ["KeyboardInterrupt"] and _errors(nb.cells[2]) == [], nb.cells[1].outputs


MORE_TRICKS = {
    "compiler": "_cc = type(exit._ip.compile)\n_orig = _cc.ast_parse\n"
                "def _blank(self, source, filename='<unknown>', symbol='exec'):\n"
                "    return _orig(self, 'pass\\n' if 'check' in source else source, filename, symbol)\n"
                "list(map(setattr, [_cc], ['ast_parse'], [_blank]))",
    "shadowed built-in": "exit._ip.user_ns['abs'] = lambda x: 0",
    "function mode": "import torch\nclass _Agree(torch.overrides.TorchFunctionMode):\n"
                     "    (__torch_function__ := lambda self, func, types, args=(), kwargs=None: func(*args, **(kwargs or {})))\n"
                     "_Agree().__enter__()",
}


@pytest.mark.parametrize("trick", sorted(MORE_TRICKS))
def test_the_probe_sees_changes_the_red_team_made(trick):
    cells = [_cell(SETUP), _cell(MORE_TRICKS[trick], "added"), _cell("check(2 + 2, 4)", "test")]
    cells[1].metadata["course_added"] = True
    nb = run(cells)
    assert REVIEW_HOLD in _errors(nb.cells[2]), f"{trick}: {nb.cells[2].outputs}"


def test_a_change_made_during_a_test_holds_that_test():
    patch = "def answer():\n    import math as m\n    m.isclose = lambda *a, **k: True\n    return 1"
    cells = [_cell(SETUP), _cell(patch, "answer"), _cell("assert math.isclose(answer(), 2)", "test"),
             _cell("check(1, 1)", "test")]
    nb = run(cells)
    assert REVIEW_HOLD in _errors(nb.cells[2]) and _errors(nb.cells[3]) == [REVIEW_HOLD]


def test_an_early_value_cannot_outvote_a_failing_test():
    from nbgrader.utils import determine_grade

    answer = "import sys\ndef answer():\n    sys.displayhook('ok')\n    return 0"
    cells = [_cell(SETUP), _cell(answer, "answer"), _cell("check(answer(), 42)", "test", 2)]
    nb = run(cells, probe=False)
    assert determine_grade(nb.cells[2])[0] == 0, nb.cells[2].outputs
