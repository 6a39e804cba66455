"""Unit tests of submission loading, rebuilding, the static scan and the output cap."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import nbformat
import pytest

from course_tools.gradeexec import CapOutput, output_size
from course_tools.integrity import BadSubmission, load_submission, reconstruct, scan, scan_notebook
from course_tools.sandbox import bwrap_command, write_kernelspec


def _release() -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    cells = [("intro", "markdown", {}), ("answer", "code", {"solution": True, "grade": False}),
             ("test", "code", {"grade": True, "solution": False, "points": 1})]
    for key, kind, meta in cells:
        cell = (nbformat.v4.new_markdown_cell if kind == "markdown" else nbformat.v4.new_code_cell)(f"# {key}")
        cell.id = key
        cell.metadata["nbgrader"] = {**meta, "grade_id": key}
        nb.cells.append(cell)
    return nb


@pytest.mark.parametrize("content, reason", [
    (None, "no notebook submitted"), (b"", "empty"), (b"{nope", "invalid JSON"),
    (b'{"nbformat": 5, "cells": [{}]}', "format version 5"), (b'{"nbformat": 4, "cells": []}', "no cells"),
    (b"[1, 2]", "not a notebook"),
])
def test_load_submission_reasons(tmp_path, content, reason):
    path = tmp_path / "nb.ipynb"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(BadSubmission, match=reason):
        load_submission(path if content is not None else tmp_path / "missing.ipynb")


def test_load_submission_reads_a_notebook(tmp_path):
    path = tmp_path / "nb.ipynb"
    nbformat.write(_release(), path)
    assert len(load_submission(path).cells) == 3


def test_reconstruct_takes_only_answers_from_the_student():
    release = _release()
    student = nbformat.from_dict(json.loads(json.dumps(release)))
    student.cells[1].source = "x = 1"
    student.cells[2].source = "assert True  # edited test"
    student.cells[2].metadata["nbgrader"]["grade"] = False  # flipped
    student.cells.append(nbformat.v4.new_code_cell("helper = 2"))
    student.cells.append(json.loads(json.dumps(student.cells[1])))  # duplicate
    student.cells[-1]["source"] = "x = 99"
    rebuilt = reconstruct(student, release, "demo")
    sources = [c.source for c in rebuilt.notebook.cells]
    assert sources == ["# intro", "x = 1", "# test", "helper = 2"]
    assert rebuilt.notebook.cells[2].metadata["nbgrader"]["grade"] is True
    assert rebuilt.answered == 1 and "duplicated" in " ".join(rebuilt.notes)
    assert rebuilt.student_cells == ["answer", rebuilt.notebook.cells[3].id]


def test_reconstruct_restores_deleted_cells_and_rejects_other_notebooks():
    release = _release()
    student = nbformat.from_dict(json.loads(json.dumps(release)))
    student.cells = student.cells[:2]
    rebuilt = reconstruct(student, release, "demo")
    assert [c.id for c in rebuilt.notebook.cells] == ["intro", "answer", "test"]
    assert "1 deleted cell(s) restored" in rebuilt.notes
    other = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("print(1)")])
    with pytest.raises(BadSubmission, match="not the demo notebook"):
        reconstruct(other, release, "demo")


@pytest.mark.parametrize("code, flag", [
    ("torch.allclose = lambda *a, **k: True", "monkeypatch: assigns torch.allclose"),
    ("import numpy as np\nnp.testing.assert_allclose = print", "monkeypatch: assigns np.testing.assert_allclose"),
    ("setattr(torch, 'allclose', None)", "monkeypatch: setattr(torch"),
    ("import sys\nsys.modules['torch'] = None", "monkeypatch: changes sys.modules"),
    ("builtins.print = None", "monkeypatch: assigns builtins.print"),
    ("open('../../solutions/x.ipynb').read()", "file access outside the scratch folder"),
    ("open('/etc/passwd')", "file access outside the scratch folder"),
    ("import shutil\nshutil.rmtree('data')", "file operation: calls shutil.rmtree"),
    ("import os\nos._exit(1)", "process exit: calls os._exit"),
    ("import sys\nsys.exit()", "process exit: calls sys.exit"),
    ("import subprocess\nsubprocess.run(['ls'])", "process or network: calls subprocess.run"),
    ("import ctypes", "imports ctypes"),
    ("import urllib.request\nurllib.request.urlopen('http://example.com')", "process or network: calls urllib.request"),
])
def test_scan_flags(code, flag):
    flags = scan(code)
    assert any(flag in f for f in flags), flags


@pytest.mark.parametrize("code", [
    "def f(x):\n    return x.sum()", "self.w = nn.Linear(2, 2)", "model.weight = None",
    "with open('results.txt', 'w') as f:\n    f.write('ok')", "def broken(:",
])
def test_scan_leaves_ordinary_code_alone(code):
    assert scan(code) == []


def test_scan_notebook_prefixes_cell_ids():
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("import mylib"),
                                         nbformat.v4.new_code_cell("mylib.f = None")])
    nb.cells[1].id = "mine"
    assert scan_notebook(nb, ["mine"]) == ["mine: monkeypatch: assigns mylib.f"]
    assert scan_notebook(nb, []) == []


def test_cap_output_limits_characters():
    cell = nbformat.v4.new_code_cell("x")
    cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text="y" * 100_000),
                    nbformat.v4.new_output("display_data", data={"text/plain": "z" * 50_000})]
    nb = nbformat.v4.new_notebook(cells=[cell])
    CapOutput(max_chars=1_000)(nb, {})
    assert sum(output_size(o) for o in nb.cells[0].outputs) < 1_200
    assert "output truncated" in nb.cells[0].outputs[0].text
    assert "was removed" in nb.cells[0].outputs[1].text


def test_kernelspec_and_bwrap_command(tmp_path):
    name = write_kernelspec(tmp_path / "jupyter", tmp_path / "run", tmp_path / "home", 2.0)
    spec = json.loads((tmp_path / "jupyter" / "kernels" / name / "kernel.json").read_text())
    assert "{connection_file}" in spec["argv"] and spec["interrupt_mode"] == "message"
    (tmp_path / "rt").mkdir()
    command = bwrap_command("bwrap", tmp_path / "run", tmp_path / "rt", ["python"])
    joined = " ".join(command)
    assert "--unshare-all" in command and "--clearenv" in command
    assert f"--tmpfs {tmp_path / 'run'}" in joined, "the working folder is a private, size-capped tmpfs"
    assert "--ro-bind /etc /etc" not in joined and "/etc/shadow" not in joined, "only an allow-list of /etc"
    assert "solutions" not in joined and command[-1] == "python"
    from course_tools.sandbox import kernel_env

    env = kernel_env("/h", "/t", {"COURSE_CACHE": "/c", "SECRET": "x", "PATH": "/grader/bin"})
    assert env["HOME"] == "/h" and env["COURSE_CACHE"] == "/c" and "SECRET" not in env
    assert "/grader/bin" not in env["PATH"], "the kernel's PATH is the course's, not the grader's"


def test_isolation_reports_the_machines_real_sandbox(monkeypatch):
    """What the grade report says matches what the machine has; CI must have a working bubblewrap."""
    from course_tools import sandbox

    monkeypatch.delenv("COURSE_NO_SANDBOX", raising=False)
    installed = shutil.which("bwrap")
    # the real state, probed here: can bubblewrap start a process in fresh namespaces on this machine?
    works = installed is not None and subprocess.run(
        [installed, "--unshare-all", "--die-with-parent", "--ro-bind", "/", "/", "true"],
        capture_output=True, check=False).returncode == 0
    if os.environ.get("CI") == "true":
        assert works, f"CI installs bubblewrap (tools/system-deps.sh) and grades in it; bwrap here: {installed}"
    if works:
        assert sandbox.bwrap_path() == installed and sandbox.isolation() == "bubblewrap sandbox"
    else:
        assert sandbox.bwrap_path() is None and sandbox.isolation() == "not sandboxed (install bubblewrap)"
    monkeypatch.setenv("COURSE_NO_SANDBOX", "1")  # the instructor's switch
    assert sandbox.isolation() == "not sandboxed (install bubblewrap)"
    monkeypatch.delenv("COURSE_NO_SANDBOX")
    monkeypatch.setattr(sandbox, "bwrap_path", lambda: None)  # what the grader sees without bubblewrap
    assert sandbox.isolation() == "not sandboxed (install bubblewrap)"


@pytest.mark.parametrize("code, flag", [
    ("get_ipython().input_transformers_cleanup.append(f)", "changes how cells run: uses get_ipython"),
    ("ip.ast_transformers.append(t)", "changes how cells run: uses .ast_transformers"),
    ("shell.set_custom_exc((Exception,), h)", "changes how cells run: uses .set_custom_exc"),
    ("import sys\nsys.settrace(None)", "changes how cells run: uses .settrace"),
    ("s = __import__('sys')", "changes how cells run: uses __import__"),
    ("exec('x = 1')", "changes how cells run: uses exec"),
    ("f = getattr(torch, name)", "changes how cells run: getattr with a computed name"),
    ("x = e.__traceback__.tb_frame.f_globals", "changes how cells run: uses .__traceback__"),
    ("g = f.__globals__", "changes how cells run: uses .__globals__"),
    ("class A:\n    def __eq__(self, other):\n        return True", "changes how cells run: defines __eq__"),
    ("class T(torch.Tensor):\n    __torch_function__ = None", "changes how cells run: defines __torch_function__"),
    ("X = type('X', (), {'__bool__': lambda s: True})", "changes how cells run: names __bool__"),
    ("import threading", "changes how cells run: imports threading"),
    ("import signal", "changes how cells run: imports signal"),
    ("from IPython import get_ipython", "changes how cells run: imports IPython"),
    ("import pickle", "changes how cells run: imports pickle"),
    ("np.load('x.npy', allow_pickle=True)", "changes how cells run: loads pickled code"),
    ("torch._C._set_grad_enabled(True)", "changes how cells run: uses torch._C"),
    ("def f():\n    global len\n    len = None", "changes how cells run: rebinds the built-in len"),
    ("def f():\n    import math as m\n    m.isclose = None", "monkeypatch: assigns m.isclose"),
    ("list(map(setattr, [torch], ['allclose'], [None]))", "changes how cells run: passes setattr around"),
    ("%pwd\nx = 1", "changes how cells run: uses IPython magics"),
    ("x = exit._ip", "changes how cells run: uses ._ip"),
    ("print(In[-1])", "changes how cells run: uses the shell's history"),
    ("Y = type('Y', (float,), {})", "changes how cells run: builds a class"),
    ("class Y(float):\n    (__eq__ := lambda s, o: True)", "changes how cells run: defines __eq__"),
    ("import _course_probe", "changes how cells run: imports _course_probe"),
    ("m = torch.overrides.TorchFunctionMode", "changes how cells run: uses .overrides"),
    ("f = getattr(sys, 'displayhook')", "changes how cells run: getattr(..., 'displayhook')"),
])
def test_scan_holds_code_that_changes_how_cells_run(code, flag):
    flags = scan(code)
    assert any(flag in f for f in flags), flags
    from course_tools.integrity import is_hold

    assert all(is_hold(f) for f in flags if f.startswith(("changes", "monkeypatch"))), flags


def test_scan_rebinding_what_locked_cells_define_and_tests_use():
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(s) for s in (
        "import torch\nfrom course_utils.checks import assert_close\nscratch = 1",
        "assert_close = lambda *a, **k: None\nscratch = 2\nfor torch in [None]: pass\nlen = 3",
        '"""test"""\nassert_close(torch.ones(1), torch.ones(1))\nassert len([1]) == 1')])
    nb.cells[0].metadata["nbgrader"] = {"locked": True}
    nb.cells[1].id = "mine"
    nb.cells[2].metadata["nbgrader"] = {"grade": True, "locked": True, "points": 1}
    flags = scan_notebook(nb, ["mine"])
    assert any("rebinds assert_close" in f for f in flags) and any("rebinds torch" in f for f in flags), flags
    assert any("rebinds the built-in len" in f for f in flags), flags
    assert not any("scratch" in f for f in flags), "a name no locked cell reads again is the student's to reuse"


@pytest.mark.parametrize("code", [
    "class Data:\n    def __init__(self):\n        super().__init__()\n    def __len__(self):\n        return 3\n"
    "    def __getitem__(self, i):\n        return i",
    "def step(model):\n    for p in model.parameters():\n        p.grad = None",
    "value = getattr(config, 'd_model')", "setattr(self, 'layer0', nn.Linear(2, 2))",
    "import math\ninput_ids = [1, 2]\nprint(type(input_ids).__name__)", "torch.save(model.state_dict(), 'm.pt')",
])
def test_scan_leaves_exercise_code_alone(code):
    assert scan(code, protected=set()) == [], scan(code, protected=set())


@pytest.mark.parametrize("cells, reason", [
    ([{"cell_type": "code", "source": 7, "metadata": {}, "outputs": []}], "source is int"),
    ([{"cell_type": "code", "source": "x", "metadata": [], "outputs": []}], "metadata is not an object"),
    ([{"cell_type": "code", "source": "x", "metadata": {"nbgrader": 3}, "outputs": []}], "nbgrader metadata"),
    ([{"cell_type": "weird", "source": "x", "metadata": {}}], "cell_type 'weird'"),
    ([1, 2], "cell 1 is not an object"),
    ({"a": 1}, "'cells' is not a list"),
])
def test_malformed_notebooks_get_a_one_line_reason(tmp_path, cells, reason):
    path = tmp_path / "nb.ipynb"
    path.write_text(json.dumps({"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": cells}))
    with pytest.raises(BadSubmission, match=reason):
        load_submission(path)


def test_symlinks_are_found_not_followed(tmp_path):
    from course_tools.integrity import symlinks_in

    (tmp_path / "alice" / "hw").mkdir(parents=True)
    (tmp_path / "alice" / "hw" / "nb.ipynb").write_text("{}")
    assert symlinks_in(tmp_path / "alice") == []
    (tmp_path / "alice" / "hw" / "data").symlink_to("/etc")
    assert symlinks_in(tmp_path / "alice") == ["alice/hw/data"]
    (tmp_path / "bob").symlink_to(tmp_path / "alice")
    assert symlinks_in(tmp_path / "bob") == ["bob"]
    (tmp_path / "alice" / "hw" / "data").unlink()
    (tmp_path / "alice" / "hw" / "nb2.ipynb").symlink_to(tmp_path / "alice" / "hw" / "nb.ipynb")
    with pytest.raises(BadSubmission, match="symlink"):
        load_submission(tmp_path / "alice" / "hw" / "nb2.ipynb")
