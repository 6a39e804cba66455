"""Grading survives any submission: one of every kind, graded together, checked row by row.

Uses the small fixture assignment in tests/fixtures so that the run stays short.
"""

from __future__ import annotations

import copy
import csv
import hashlib
import importlib.util
import json
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import nbformat
import pytest

from course_utils.build import generate_release
from course_utils.grading import Settings, grade
from course_utils.sandbox import bwrap_path

ROOT = Path(__file__).resolve().parents[1]
FIX = "99_fixture"
SANDBOXED = bwrap_path() is not None

ANSWERS = {
    "add": "def add(a, b):\n    return a + b",
    "norm": "def norm(x):\n    return math.sqrt(float((x * x).sum()))",
    "mean": "def mean(values):\n    return sum(values) / len(values)",
}


def make_course(folder: Path) -> Path:
    """A course root holding only the fixture assignment, and its release."""
    spec = importlib.util.spec_from_file_location("py2nb", ROOT / "tools" / "py2nb.py")
    py2nb = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(py2nb)
    source = (ROOT / "tests" / "fixtures" / f"{FIX}.py").read_text()
    (folder / "solutions" / FIX).mkdir(parents=True)
    (folder / "solutions" / FIX / f"{FIX}.ipynb").write_text(py2nb.dumps(py2nb.parse(source, FIX)))
    shutil.copy(ROOT / "nbgrader_config.py", folder / "nbgrader_config.py")
    generate_release(folder, FIX, folder / "notebooks")
    return folder


def release(course: Path) -> dict:
    return json.loads((course / "notebooks" / FIX / f"{FIX}.ipynb").read_text())


def answered(course: Path, answers: dict[str, str] | None = None, extra: list[str] = ()) -> dict:
    """The release with answers filled in, plus student-added code cells at the end."""
    nb = release(course)
    for cell in nb["cells"]:
        if cell["id"] in (answers if answers is not None else ANSWERS):
            cell["source"] = (answers if answers is not None else ANSWERS)[cell["id"]]
    for i, code in enumerate(extra):
        nb["cells"].append({"cell_type": "code", "id": f"mine-{i}", "metadata": {}, "source": code,
                            "outputs": [], "execution_count": None})
    return nb


def with_answer(name: str, code: str) -> dict[str, str]:
    return {**ANSWERS, name: code}


class Server:
    """A TCP server on the host's loopback; a sandboxed kernel must not reach it."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(5)
        self.port = self.sock.getsockname()[1]
        self.hits = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.hits += 1
            conn.close()


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    base = tmp_path_factory.mktemp("hardened")
    course = make_course(base / "course")
    subs = base / "submitted"
    out = base / "graded"
    server = Server()
    solutions = course / "solutions" / FIX / f"{FIX}.ipynb"
    gradebook = out / ".work" / "students" / "attacker" / "gradebook.db"
    sentinel = base / "instructor-notes.txt"
    sentinel.write_text("instructor only")
    # unsandboxed, the attack would succeed: aim it at a decoy so the rest of the module still runs
    victim = course / "solutions" if SANDBOXED else base / "decoy"
    victim.mkdir(exist_ok=True)
    attempts = f"""
import os, shutil, socket
for label, action in [
    ("READ", lambda: open({str(solutions)!r}).read()),
    ("WRITE", lambda: open({str(gradebook)!r}, "ab").write(b"x") + open({str(sentinel)!r}, "a").write("x")),
    ("DELETE", lambda: shutil.rmtree({str(victim)!r})),
    ("NET", lambda: socket.create_connection(("127.0.0.1", {server.port}), timeout=3)),
    ("MEMORY", lambda: bytearray(6 * 2**30)),
]:
    try:
        result = action()
        print(label + "-OK", str(result)[:2000])
    except Exception as error:
        print(label + "-BLOCKED", type(error).__name__)
"""
    v3 = nbformat.convert(nbformat.from_dict(answered(course)), 3)
    duplicated = answered(course)
    wrong_copy = copy.deepcopy(next(c for c in duplicated["cells"] if c["id"] == "add"))
    wrong_copy["source"] = "def add(a, b):\n    return 0"
    duplicated["cells"].append(wrong_copy)
    flipped = answered(course)
    for cell in flipped["cells"]:
        if cell["id"] == "test_add":
            cell["metadata"]["nbgrader"].update(grade=False, solution=True, points=100)
            cell["source"] = "pass"
    edited = answered(course, with_answer("mean", "def mean(values):\n    return 0.0"))
    for cell in edited["cells"]:
        if cell["id"] == "test_mean":
            cell["source"] = "assert True"
    edited["cells"] = [c for c in edited["cells"] if c["id"] != "test_norm"]
    other = ROOT / "notebooks" / "03_attention" / "03_attention.ipynb"

    notebooks = {
        "perfect": answered(course),
        "untouched": release(course),
        "wrong": answered(course, with_answer("add", "def add(a, b):\n    return a - b")),
        "infinite": answered(course, with_answer("add", "def add(a, b):\n    while True:\n        pass")),
        "crash": answered(course, with_answer("norm", "import os\ndef norm(x):\n    os._exit(1)")),
        "segfault": answered(course, extra=["import ctypes\nctypes.string_at(0)"]),
        "syntax": answered(course, with_answer("norm", "def norm(x):\n    return (")),
        "edited_tests": edited,
        "v3": nbformat.writes(v3),
        "duplicated": duplicated,
        "flipped": flipped,
        "huge_output": answered(course, extra=["print('x' * 50_000_000)"]),
        "monkeypatch": answered(course, with_answer("norm", "def norm(x):\n    return 0.0\ntorch.allclose = lambda *a, **k: True")),
        "attacker": answered(course, extra=[attempts]),
        "invalid_json": '{"cells": [',
        "format5": json.dumps({**answered(course), "nbformat": 5}),
        "wrong_assignment": other.read_text(),
        "empty": "",
    }
    for student, nb in notebooks.items():
        folder = subs / student / FIX
        folder.mkdir(parents=True)
        (folder / f"{FIX}.ipynb").write_text(nb if isinstance(nb, str) else json.dumps(nb))
    (subs / "missing" / FIX).mkdir(parents=True)
    (subs / "no_folder").mkdir()
    originals = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in subs.rglob("*.ipynb")}
    instructor = hashlib.sha256(solutions.read_bytes()).hexdigest()
    start = time.perf_counter()
    rows = grade(course, subs, FIX, out=out, jobs=2, settings=Settings(cell_timeout=8))
    seconds = time.perf_counter() - start
    with (out / "grades.csv").open() as handle:
        table = {r["student"]: r for r in csv.DictReader(handle)}
    print(f"\ngraded {len(rows)} submissions in {seconds:.0f} s ({'sandboxed' if SANDBOXED else 'NOT sandboxed'})")
    return dict(course=course, subs=subs, out=out, rows=rows, table=table, server=server,
                originals=originals, instructor=instructor, solutions=solutions, sentinel=sentinel,
                gradebook=gradebook)


def score(run, student):
    row = run["table"][student]
    return float(row["score"]), float(row["max_score"])


def graded_text(run, student) -> str:
    path = run["out"] / ".work" / "students" / student / "autograded" / student / FIX / f"{FIX}.ipynb"
    return path.read_text()


def test_every_student_has_a_row(run):
    expected = {"perfect", "untouched", "wrong", "infinite", "crash", "segfault", "syntax", "edited_tests",
                "v3", "duplicated", "flipped", "huge_output", "monkeypatch", "attacker", "invalid_json",
                "format5", "wrong_assignment", "empty", "missing", "no_folder"}
    assert set(run["table"]) == expected
    assert all(r["reason"] for r in run["table"].values()), "every row has a reason"
    assert all(float(r["max_score"]) == 6 for r in run["table"].values())


def test_honest_submissions(run):
    assert score(run, "perfect") == (6, 6) and run["table"]["perfect"]["status"] == "graded"
    assert score(run, "untouched")[0] == 0 and "no exercise answered" in run["table"]["untouched"]["reason"]
    assert score(run, "wrong")[0] == 4 and run["table"]["wrong"]["failed_tests"] == "test_add"


def test_infinite_loop_costs_one_cell(run):
    row = run["table"]["infinite"]
    assert score(run, "infinite")[0] == 4, row
    assert "cell time limit hit in test_add" in row["reason"]


def test_kernel_death_keeps_other_points(run):
    row = run["table"]["crash"]
    assert score(run, "crash")[0] == 3, row  # add (2) and mean (1) survive norm's os._exit
    assert row["status"] == "review" and "kernel died in cell test_norm" in row["reason"]
    assert "os._exit" in row["flags"]
    seg = run["table"]["segfault"]
    assert score(run, "segfault")[0] == 6 and seg["status"] == "review", seg
    assert "kernel died in cell mine-0" in seg["reason"] and "ctypes" in seg["flags"]


def test_syntax_error_costs_its_exercise(run):
    assert score(run, "syntax")[0] == 3


def test_edited_and_deleted_tests_are_restored(run):
    row = run["table"]["edited_tests"]
    assert score(run, "edited_tests")[0] == 5, row  # test_mean restored and failing; test_norm re-inserted
    assert "test_mean" in row["failed_tests"] and "deleted cell(s) restored" in row["reason"]


def test_old_format_duplicates_and_flipped_metadata(run):
    assert score(run, "v3") == (6, 6), run["table"]["v3"]
    assert score(run, "duplicated")[0] == 6 and "duplicated" in run["table"]["duplicated"]["reason"]
    assert score(run, "flipped") == (6, 6), run["table"]["flipped"]


@pytest.mark.parametrize("student, reason", [
    ("invalid_json", "invalid JSON"), ("format5", "format version 5"),
    ("wrong_assignment", "not the 99_fixture notebook"), ("empty", "empty"),
    ("missing", "no notebook submitted"), ("no_folder", "no notebook submitted"),
])
def test_bad_files_get_zero_and_one_line(run, student, reason):
    row = run["table"][student]
    assert score(run, student)[0] == 0 and row["status"] == "invalid", row
    assert reason in row["reason"] and "\n" not in row["reason"] and "Traceback" not in row["reason"]


def test_huge_output_is_capped(run):
    row = run["table"]["huge_output"]
    assert score(run, "huge_output") == (6, 6), row
    assert len(graded_text(run, "huge_output")) < 500_000
    html = run["out"] / "feedback" / "huge_output" / FIX / f"{FIX}.html"
    assert html.stat().st_size < 1_000_000


def test_monkeypatching_is_flagged(run):
    row = run["table"]["monkeypatch"]
    assert row["status"] == "review" and "monkeypatch: assigns torch.allclose" in row["flags"], row


def test_sandbox_blocks_reading_writing_and_network(run):
    row = run["table"]["attacker"]
    text = graded_text(run, "attacker")
    assert "file access outside the scratch folder" in row["flags"] and "socket" in row["flags"]
    assert row["status"] == "review", "flagged submissions need manual review"
    assert "MEMORY-BLOCKED MemoryError" in text, "6 GiB must not fit under the 4 GiB memory cap"
    if SANDBOXED:
        assert hashlib.sha256(run["solutions"].read_bytes()).hexdigest() == run["instructor"], "solutions/ changed"
        assert row["sandboxed"] == "yes"
        for label in ("READ", "DELETE", "NET"):
            assert f"{label}-BLOCKED" in text and f"{label}-OK" not in text, f"{label} was not blocked"
        # writes outside the scratch folder land in the sandbox's private tmpfs, if anywhere
        assert run["sentinel"].read_text() == "instructor only", "an instructor file was changed"
        assert not run["gradebook"].read_bytes().endswith(b"x"), "the gradebook was written"
        assert score(run, "attacker") == (6, 6), "the gradebook still grades the attacker correctly"
        assert run["server"].hits == 0, "the sandboxed kernel reached the host's network"
        html = (run["out"] / "feedback" / "attacker" / FIX / f"{FIX}.html").read_text()
        assert "hidden_norm_check" not in html
    else:
        assert row["sandboxed"] == "no" and "not sandboxed" in row["reason"]


def test_feedback_never_shows_hidden_tests(run):
    for html in (run["out"] / "feedback").rglob("*.html"):
        text = html.read_text()
        for secret in ("hidden_add_check", "hidden_norm_check", "hidden_mean_check", "BEGIN HIDDEN"):
            assert secret not in text, f"{secret} in {html}"


def test_originals_untouched(run):
    for path, digest in run["originals"].items():
        assert hashlib.sha256(path.read_bytes()).hexdigest() == digest, f"{path} was modified"


def test_notebook_limit_defaults_to_a_multiple_of_the_solution(run):
    stored = json.loads((run["out"] / ".work" / "solution.json").read_text())
    config = (run["out"] / ".work" / "students" / "perfect" / "nbgrader_config.py").read_text()
    expected = max(120, int(-(-3 * stored["seconds"] // 1)) + 60)
    assert f"notebook_timeout = {expected}" in config


def test_regrading_gives_the_same_result(run):
    before = (run["out"] / "grades.csv").read_text()
    rows = grade(run["course"], run["subs"], FIX, out=run["out"], jobs=2, settings=Settings(cell_timeout=8))
    assert (run["out"] / "grades.csv").read_text() == before
    assert len(rows) == len(run["rows"])


def test_notebook_deadline_and_interrupted_runs(tmp_path):
    course = make_course(tmp_path / "course")
    subs = tmp_path / "submitted"
    loop = "def {0}(*args):\n    while True:\n        pass"
    slow = answered(course, {name: loop.format(name) for name in ANSWERS})
    for student, nb in (("slow", slow), ("ok1", answered(course)), ("ok2", answered(course)),
                        ("ok3", answered(course))):
        (subs / student / FIX).mkdir(parents=True)
        (subs / student / FIX / f"{FIX}.ipynb").write_text(json.dumps(nb))
    out = tmp_path / "graded"
    # interrupt a real run once the first student is finished
    command = [sys.executable, "-m", "course_utils.cli", "grade", str(subs), "--assignment", FIX,
               "--out", str(out), "--jobs", "1", "--cell-timeout", "6", "--notebook-timeout", "14"]
    proc = subprocess.Popen(command, cwd=course, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    results = out / ".work" / "results"
    deadline = time.time() + 240
    while time.time() < deadline and not (results.exists() and any(results.glob("*.json"))):
        time.sleep(0.5)
    proc.kill()
    proc.wait()
    finished = sorted(p.stem for p in results.glob("*.json"))
    assert finished and not (out / "grades.csv").exists(), "an interrupted run must not leave a grade table"
    assert not list(results.glob("*.tmp")), "no half-written results"
    rerun = subprocess.run(command, cwd=course, capture_output=True, text=True, timeout=300)
    with (out / "grades.csv").open() as handle:
        table = {r["student"]: r for r in csv.DictReader(handle)}
    assert set(table) == {"slow", "ok1", "ok2", "ok3"}, rerun.stdout + rerun.stderr
    for student in ("ok1", "ok2", "ok3"):
        assert table[student]["score"] == "6", table[student]
    slow_row = table["slow"]
    assert slow_row["score"] == "0" and "notebook time limit reached" in slow_row["reason"], slow_row
    assert rerun.returncode == 0, "no submission needs review"
    assert "isolation:" in rerun.stdout and "need manual review" in rerun.stdout


def test_without_bubblewrap_grading_still_works_and_says_so(tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_NO_SANDBOX", "1")
    course = make_course(tmp_path / "course")
    (tmp_path / "submitted" / "solo" / FIX).mkdir(parents=True)
    (tmp_path / "submitted" / "solo" / FIX / f"{FIX}.ipynb").write_text(json.dumps(answered(course)))
    rows = grade(course, tmp_path / "submitted", FIX, out=tmp_path / "graded", jobs=1,
                 settings=Settings(cell_timeout=30, notebook_timeout=120))
    assert len(rows) == 1 and rows[0].score == 6 and not rows[0].sandboxed
    assert "not sandboxed" in rows[0].reason
