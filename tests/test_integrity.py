"""Unit tests of submission loading, rebuilding, the static scan and the output cap."""

from __future__ import annotations

import json

import nbformat
import pytest

from course_utils.gradeexec import CapOutput, output_size
from course_utils.integrity import BadSubmission, load_submission, reconstruct, scan, scan_notebook
from course_utils.sandbox import bwrap_command, isolation, write_kernelspec


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
    name = write_kernelspec(tmp_path / "jupyter", tmp_path / "run", 2.0)
    spec = json.loads((tmp_path / "jupyter" / "kernels" / name / "kernel.json").read_text())
    assert "{connection_file}" in spec["argv"] and spec["interrupt_mode"] == "message"
    command = bwrap_command("bwrap", tmp_path / "run", tmp_path / "rt", ["python"])
    joined = " ".join(command)
    assert "--unshare-all" in command and f"--bind {tmp_path / 'run'} {tmp_path / 'run'}" in joined
    assert "solutions" not in joined and command[-1] == "python"
    assert isolation() in ("bubblewrap sandbox", "not sandboxed (install bubblewrap)")
