"""Grading survives any submission: one of every kind, graded together, checked row by row.

Uses the small fixture assignment in tests/fixtures so that the run stays short.
"""

from __future__ import annotations

import copy
import csv
import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import nbformat
import pytest

from course_tools.build import generate_release
from course_tools.grading import Settings, grade
from course_tools.pairing import read_text_notebook
from course_tools.sandbox import bwrap_path

pytestmark = pytest.mark.slow  # grades submissions end to end

ROOT = Path(__file__).resolve().parents[1]
FIX = "99_fixture"
SANDBOXED = bwrap_path() is not None
IN_CI = bool(os.environ.get("CI"))  # CI=true on GitHub and GitLab
# every test that checks less without bubblewrap fails in CI instead: `assert SANDBOXED or not IN_CI, NO_SANDBOX_IN_CI`
NO_SANDBOX_IN_CI = "CI installs bubblewrap (tools/system-deps.sh): the sandbox must be tested there"
# without bubblewrap, grade() refuses unless told: the module then runs unsandboxed (aimed at decoys), on purpose
SETTINGS = Settings(cell_timeout=8, interrupt_grace=4, sandbox=SANDBOXED)
MARKER, MARKER_VALUE = "COURSE_TEST_GRADER_SECRET", "grader-only-7d1e0c"

ANSWERS = {
    "add": "def add(a, b):\n    return a + b",
    "norm": "def norm(x):\n    return math.sqrt(float((x * x).sum()))",
    "mean": "def mean(values):\n    return sum(values) / len(values)",
}


def make_course(folder: Path) -> Path:
    """A course root holding only the fixture assignment, and its release."""
    source = (ROOT / "tests" / "fixtures" / f"{FIX}.py").read_text()    # jupytext percent format
    (folder / "solutions" / FIX).mkdir(parents=True)
    nbformat.write(read_text_notebook(source), folder / "solutions" / FIX / f"{FIX}.ipynb")
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
    gradebook = out / ".work" / "template" / "gradebook.db"
    sentinel = base / "instructor-notes.txt"
    sentinel.write_text("instructor only")
    # unsandboxed, the attack would succeed: aim it at a decoy so the rest of the module still runs
    victim = course / "solutions" if SANDBOXED else base / "decoy"
    victim.mkdir(exist_ok=True)
    attempts = f"""
import os, shutil, socket
for label, action in [
    ("READ", lambda: open({str(solutions)!r}).read()),
    ("TOOLS", lambda: open({str(ROOT / "course_tools" / "integrity.py")!r}).read()),
    ("IMPORT", lambda: __import__("course_tools.integrity").integrity.HOLD_MODULES),
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
    snoop = """import os, json
seen = {"env": dict(os.environ), "home": os.path.expanduser("~"), "home_files": os.listdir(os.path.expanduser("~"))}
for name, probe in [("shadow", lambda: open("/etc/shadow").read()[:20]), ("root", lambda: os.listdir("/root")),
                    ("home_dir", lambda: os.listdir("/home")), ("etc", lambda: sorted(os.listdir("/etc")))]:
    try:
        seen[name] = probe()
    except Exception as error:
        seen[name] = "BLOCKED " + type(error).__name__
print("SNOOP" + json.dumps(seen) + "SNOOP")
"""
    filler = """import os, tempfile
for folder in (".", tempfile.gettempdir(), os.path.expanduser("~")):
    with open(os.path.join(folder, "filler.bin"), "wb") as handle:
        handle.write(b"x" * 20_000_000)
print("FILLED")
"""

    wrong_answers = {name: f"def {name}(*args):\n    return -1" for name in ANSWERS}
    transformer = ("get_ipython().input_transformers_cleanup.append(\n"
                   "    lambda lines: [line.replace('assert', 'pass  #') for line in lines])\n")
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
        # ways around the tests: every answer is wrong, and the trick would make the tests pass
        "transformer": answered(course, {**wrong_answers, "add": transformer + wrong_answers["add"]}),
        "custom_exc": answered(course, {**wrong_answers, "add": "get_ipython().set_custom_exc((BaseException,), "
                                        "lambda *a, **k: None)\n" + wrong_answers["add"]}),
        "rebind": answered(course, {**ANSWERS, "norm": "def norm(x):\n    return 0.0\n"
                                    "class _Yes:\n    def allclose(self, *a, **k):\n        return True\n"
                                    "    def tensor(self, *a, **k):\n        return 0\n"
                                    "torch = _Yes()"}),
        "settrace": answered(course, {**wrong_answers, "add": "import sys\nsys.settrace(lambda *a: None)\n"
                                      + wrong_answers["add"]}),
        "builtin": answered(course, {**ANSWERS, "mean": "def mean(values):\n    return sum(values) / len(values)\n"
                                     "abs = lambda x: 0"}),
        "snoop": answered(course, extra=[snoop]),
        "filler": answered(course, extra=[filler]),
        "resist": answered(course, with_answer("norm", "def norm(x):\n    import signal\n"
                                                        "    signal.signal(signal.SIGINT, signal.SIG_IGN)\n"
                                                        "    while True:\n        pass")),
        "int_source": json.dumps({**answered(course), "cells": [{**c, "source": 7} if c["id"] == "add" else c
                                                                  for c in answered(course)["cells"]]}),
        # any folder name is a student
        "-rf": answered(course), "[a]*": answered(course), "sp ace ünï": answered(course), "x" * 200: answered(course),
    }
    for student, nb in notebooks.items():
        folder = subs / student / FIX
        folder.mkdir(parents=True)
        (folder / f"{FIX}.ipynb").write_text(nb if isinstance(nb, str) else json.dumps(nb))
    (subs / "missing" / FIX).mkdir(parents=True)
    (subs / "no_folder").mkdir()
    (subs / "link_file" / FIX).mkdir(parents=True)
    (subs / "link_file" / FIX / f"{FIX}.ipynb").symlink_to(os.path.relpath(solutions, subs / "link_file" / FIX))
    (subs / "link_folder").mkdir()
    (subs / "link_folder" / FIX).symlink_to(subs / "perfect" / FIX)
    (subs / "link_student").symlink_to(subs / "perfect")
    originals = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in subs.rglob("*.ipynb")}
    instructor = hashlib.sha256(solutions.read_bytes()).hexdigest()
    start = time.perf_counter()
    os.environ[MARKER] = MARKER_VALUE  # in the grader's environment only: must never reach a kernel
    try:
        rows = grade(course, subs, FIX, out=out, jobs=2, settings=SETTINGS, trusted={"resist"})
    finally:
        os.environ.pop(MARKER, None)
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
    return (run["out"] / "graded" / student / FIX / f"{FIX}.ipynb").read_text()


def feedback_html(run, student) -> str:
    return (run["out"] / "feedback" / student / FIX / f"{FIX}.html").read_text()


def test_rows_say_whether_the_kernel_was_sandboxed(run):
    """The sandboxed column is the machine's state, and the kernel really ran inside (or outside) bubblewrap."""
    assert SANDBOXED or not IN_CI, NO_SANDBOX_IN_CI
    ran = {s: r for s, r in run["table"].items() if r["status"] in ("graded", "review")}
    assert len(ran) > 20 and {r["sandboxed"] for r in ran.values()} == {"yes" if SANDBOXED else "no"}, ran
    assert all(("not sandboxed" in r["reason"]) is not SANDBOXED for r in ran.values()), ran
    env = json.loads(graded_text(run, "snoop").split("SNOOP")[1].encode().decode("unicode_escape"))["env"]
    assert (env.get("COURSE_SANDBOXED") == "1") is SANDBOXED, "the kernel's environment contradicts the row"


def test_every_student_has_a_row(run):
    expected = {"perfect", "untouched", "wrong", "infinite", "crash", "segfault", "syntax", "edited_tests",
                "v3", "duplicated", "flipped", "huge_output", "monkeypatch", "attacker", "invalid_json",
                "format5", "wrong_assignment", "empty", "missing", "no_folder", "transformer", "custom_exc",
                "rebind", "settrace", "builtin", "snoop", "filler", "resist", "int_source", "-rf", "[a]*",
                "sp ace ünï", "x" * 200, "link_file", "link_folder", "link_student"}
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
    assert SANDBOXED or not IN_CI, NO_SANDBOX_IN_CI
    if SANDBOXED:
        assert hashlib.sha256(run["solutions"].read_bytes()).hexdigest() == run["instructor"], "solutions/ changed"
        assert row["sandboxed"] == "yes"
        for label in ("READ", "TOOLS", "IMPORT", "DELETE", "NET"):
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
    """No --notebook-timeout: the run timed the instructor's solution and gave each notebook a limit that
    no submission of the run reached, with room for honest work several times slower than the solution."""
    measured = json.loads((run["out"] / ".work" / "solution.json").read_text())["seconds"]
    used = json.loads((run["out"] / ".work" / "settings.json").read_text())
    limit = used["notebook_timeout"]
    assert measured > 0 and used["cell_timeout"] == 8, "the solution was graded, the given settings kept"
    assert isinstance(limit, int) and limit < 3600, "the limit is the solution's, not the fallback of an hour"
    late = [s for s, r in run["table"].items() if "notebook time limit" in r["reason"]]
    assert not late, f"the notebook limit of {limit} s stopped {late}"
    graded = {s: float(r["seconds"]) for s, r in run["table"].items() if r["status"] == "graded"}
    assert len(graded) > 5 and max(graded.values()) < limit, (graded, limit)
    assert 2 * measured < limit, f"a submission twice as slow as the solution ({measured:.0f} s) would be stopped"


@pytest.mark.parametrize("student", ["transformer", "custom_exc", "rebind", "settrace", "builtin"])
def test_changing_how_cells_run_earns_nothing_until_reviewed(run, student):
    """Each trick would make wrong answers pass; the tests after it are held, and the row says so."""
    row = run["table"][student]
    assert row["status"] == "review" and "changes how cells run" in row["flags"], row
    assert "held for review" in row["reason"], row
    earned = {"transformer": 0, "custom_exc": 0, "settrace": 0, "rebind": 2, "builtin": 5}[student]
    assert score(run, student)[0] == earned, row
    assert "ReviewHold" in graded_text(run, student)


def test_review_holds_keep_the_points_of_earlier_tests(run):
    assert run["table"]["rebind"]["failed_tests"] == "test_mean test_norm", "test_add ran before the change"


@pytest.mark.parametrize("student", ["-rf", "[a]*", "sp ace ünï", "x" * 200])
def test_any_folder_name_gets_its_own_row(run, student):
    assert score(run, student) == (6, 6) and run["table"][student]["status"] == "graded", run["table"][student]
    assert (run["out"] / "feedback" / student / FIX / f"{FIX}.html").is_file()


@pytest.mark.parametrize("student", ["link_file", "link_folder", "link_student"])
def test_symlinks_are_never_followed(run, student):
    row = run["table"][student]
    assert row["status"] == "invalid" and score(run, student)[0] == 0 and "symlink" in row["reason"], row
    assert not (run["out"] / "feedback" / student).exists(), "nothing of the solution reaches feedback"


def test_malformed_cell_is_invalid_not_error(run):
    row = run["table"]["int_source"]
    assert row["status"] == "invalid" and "source is int" in row["reason"], row


def test_a_cell_that_resists_interrupts_costs_only_itself(run):
    row = run["table"]["resist"]  # trusted: its `import signal` is not held, so this checks the guard alone
    assert score(run, "resist")[0] == 3, row  # add (2) before, mean (1) after, in a fresh kernel
    assert row["failed_tests"] == "test_norm" and "did not stop when interrupted" in row["reason"], row
    assert "holds lifted by the instructor" in row["reason"]


def test_nothing_of_the_grader_leaks_into_the_kernel(run):
    text = graded_text(run, "snoop")
    seen = json.loads(text.split("SNOOP")[1].encode().decode("unicode_escape"))
    env = seen["env"]
    assert MARKER not in env and MARKER_VALUE not in text, "a variable of the grader's shell reached the kernel"
    assert set(env) <= {"PATH", "HOME", "TMPDIR", "MPLCONFIGDIR", "LANG", "PYTHONUNBUFFERED", "PYTHONDONTWRITEBYTECODE",
                        "OMP_NUM_THREADS", "MKL_NUM_THREADS", "MPLBACKEND", "TOKENIZERS_PARALLELISM", "HF_HUB_OFFLINE",
                        "TRANSFORMERS_OFFLINE", "COURSE_GRADING", "COURSE_SANDBOXED", "COURSE_CACHE", "COURSE_DEVICE",
                        "PWD", "CLICOLOR", "CLICOLOR_FORCE", "FORCE_COLOR", "GIT_PAGER", "PAGER", "TERM",
                        "PYDEVD_USE_FRAME_EVAL", "JPY_PARENT_PID", "JPY_SESSION_NAME",
                        "TORCHINDUCTOR_CACHE_DIR"}, sorted(env)  # the last ones: set in the kernel by ipykernel or torch
    assert seen["home"] != os.path.expanduser("~"), "the kernel has a HOME of its own"
    assert set(seen["home_files"]) <= {".ipython", ".matplotlib", ".cache", "tmp"}, seen["home_files"]
    for html in (run["out"] / "feedback").rglob("*.html"):
        assert MARKER_VALUE not in html.read_text()
    assert SANDBOXED or not IN_CI, NO_SANDBOX_IN_CI
    if SANDBOXED:
        assert seen["shadow"].startswith("BLOCKED"), "the host's /etc/shadow is readable"
        assert "shadow" not in seen["etc"] and "sudoers" not in seen["etc"], seen["etc"]
        assert seen["home_dir"].startswith("BLOCKED"), "/home is visible"
        python_dirs = {Path(p).parts[2] for p in (sys.prefix, sys.base_prefix) if Path(p).parts[1:2] == ("root",)}
        root_seen = seen["root"]  # only the folders this Python lives in, when it lives under /root
        assert isinstance(root_seen, str) and root_seen.startswith("BLOCKED") or set(root_seen) <= python_dirs, root_seen


def test_scratch_files_are_removed_once_graded(run):
    assert "FILLED" in graded_text(run, "filler")
    left = [p for p in (run["out"] / ".work").rglob("*") if p.is_file() and "students" in p.parts]
    assert not left, f"scratch files left behind: {left[:3]}"
    big = [p for p in run["out"].rglob("*") if p.is_file() and p.stat().st_size > 5_000_000]
    assert not big, f"the filler's files were kept: {big}"


def test_regrading_gives_the_same_result(run):
    before = (run["out"] / "grades.csv").read_text()
    rows = grade(run["course"], run["subs"], FIX, out=run["out"], jobs=2, settings=SETTINGS, trusted={"resist"})
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
    command = [sys.executable, "-m", "course_tools.cli", "grade", str(subs), "--assignment", FIX,
               # three looping cells of 12 s pass the notebook's 30 s; an honest notebook needs a few
               # seconds, so a busy machine does not make it late
               "--out", str(out), "--jobs", "1", "--cell-timeout", "12", "--notebook-timeout", "30"]
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
    # progress: students done / total and the time left, then the rate
    assert "/4 done, about" in rerun.stdout and " left" in rerun.stdout, rerun.stdout
    assert "per minute" in rerun.stdout, rerun.stdout


def test_without_bubblewrap_grading_is_refused_unless_the_instructor_says_so(tmp_path, monkeypatch):
    from course_tools.grading import NoSandbox

    monkeypatch.setenv("COURSE_NO_SANDBOX", "1")
    course = make_course(tmp_path / "course")
    (tmp_path / "submitted" / "solo" / FIX).mkdir(parents=True)
    (tmp_path / "submitted" / "solo" / FIX / f"{FIX}.ipynb").write_text(json.dumps(answered(course)))
    with pytest.raises(NoSandbox):
        grade(course, tmp_path / "submitted", FIX, out=tmp_path / "graded", jobs=1,
              settings=Settings(cell_timeout=30, notebook_timeout=120))
    assert not (tmp_path / "graded" / "grades.csv").exists(), "nothing was graded"
    rows = grade(course, tmp_path / "submitted", FIX, out=tmp_path / "graded", jobs=1,  # --no-sandbox
                 settings=Settings(cell_timeout=30, notebook_timeout=120, sandbox=False))
    assert len(rows) == 1 and rows[0].score == 6 and not rows[0].sandboxed
    assert "not sandboxed" in rows[0].reason


DETERMINISM_SET = ["perfect", "wrong", "infinite", "crash", "transformer", "invalid_json", "link_file"]


def _rows(table: dict, students) -> dict:
    return {s: {k: v for k, v in table[s].items() if k != "seconds"} for s in students}


def test_the_same_grade_with_one_or_two_workers(run, tmp_path):
    """The same mixed set graded with --jobs 1 as the module's run graded it with --jobs 2 (and
    test_a_local_worker_killed_mid_run_loses_nothing grades it with --jobs 2 and a fault)."""
    subs = tmp_path / "subs"
    subs.mkdir()
    for student in DETERMINISM_SET:
        shutil.copytree(run["subs"] / student, subs / student, symlinks=True)
    link = subs / "link_file" / FIX / f"{FIX}.ipynb"
    link.unlink()
    link.symlink_to(run["solutions"])
    expected = _rows(run["table"], DETERMINISM_SET)
    out = tmp_path / "jobs1"
    grade(run["course"], subs, FIX, out=out, jobs=1, settings=SETTINGS, force=True)
    with (out / "grades.csv").open() as handle:
        table = {r["student"]: r for r in csv.DictReader(handle)}
    print("\n--jobs 1:")
    for student in DETERMINISM_SET:
        r = table[student]
        print(f"  {student:<13} {r['score']}/{r['max_score']} {r['status']:<8} {r['reason'][:90]}")
    assert _rows(table, DETERMINISM_SET) == expected, "--jobs 1 graded differently"
    # an `error` row (the grader failed, not the student) is never served from the cache
    stored = next((out / ".work" / "results").glob("*.json"))
    entry = json.loads(stored.read_text())
    entry["row"].update(status="error", score=0.0, reason="autograde failed: injected")
    stored.write_text(json.dumps(entry))
    rows = {r.student: r for r in grade(run["course"], subs, FIX, out=out, jobs=2, settings=SETTINGS)}
    assert rows[entry["student"]].status != "error" and "injected" not in rows[entry["student"]].reason
    assert len(rows) == len(DETERMINISM_SET)


@pytest.mark.parametrize("layout, found", [
    ({}, "the folder is empty"),
    ({"alice.ipynb": "{}"}, "notebook(s) directly in it (alice.ipynb)"),
    ({"alice/99_fixture.ipynb": "{}"}, "notebooks without an assignment folder (alice/99_fixture.ipynb)"),
    ({"alice/other/x.ipynb": "{}"}, "assignment folders named other, none named 99_fixture"),
])
def test_a_wrong_layout_fails_at_once_naming_it(tmp_path, capsys, monkeypatch, layout, found):
    from course_tools.cli import main

    course = make_course(tmp_path / "course")
    subs = tmp_path / "subs"
    subs.mkdir()
    for name, text in layout.items():
        (subs / name).parent.mkdir(parents=True, exist_ok=True)
        (subs / name).write_text(text)
    monkeypatch.chdir(course)
    out = tmp_path / "out"
    assert main(["grade", str(subs), "--assignment", FIX, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "SUBMISSIONS/<student>/<assignment>/<notebook>.ipynb" in err and found in err, err
    assert not (out / ".work" / "template").exists(), "nothing was generated or graded"


FAULT_SET = ["perfect", "wrong", "crash", "transformer", "invalid_json"]


def _copy_set(run, subs: Path, students) -> None:
    subs.mkdir()
    for student in students:
        shutil.copytree(run["subs"] / student, subs / student, symlinks=True)


def _grade_killing_a_worker(run, subs: Path, out: Path, pids, **kwargs) -> tuple[dict, list[int]]:
    """Grade ``subs`` in a thread; once a worker has been on a student for a second, SIGKILL it."""
    import signal as signals

    result: dict = {}
    thread = threading.Thread(target=lambda: result.update(rows=grade(
        run["course"], subs, FIX, out=out, settings=SETTINGS, force=True, **kwargs)), daemon=True)
    thread.start()
    killed: list[int] = []
    deadline = time.time() + 300
    while thread.is_alive() and not killed and time.time() < deadline:
        busy = pids()
        if busy:
            time.sleep(1.0)
            os.kill(busy[0], signals.SIGKILL)
            killed.append(busy[0])
        time.sleep(0.2)
    thread.join(600)
    assert not thread.is_alive(), "grading did not finish after a worker was killed"
    with (out / "grades.csv").open() as handle:
        table = list(csv.DictReader(handle))
    assert len(table) == len({r["student"] for r in table}), "a student has two rows"
    return {r["student"]: r for r in table}, killed


def test_a_local_worker_killed_mid_run_loses_nothing(run, tmp_path):
    """--jobs 2: a worker process killed while it grades; its student is graded again by a fresh one."""
    import multiprocessing

    subs = tmp_path / "subs"
    _copy_set(run, subs, FAULT_SET)
    out = tmp_path / "out"
    students = out / ".work" / "students"

    def busy() -> list[int]:  # a worker of the pool is on a student once its scratch course exists
        if not (students.exists() and any(students.iterdir())):
            return []
        return [p.pid for p in multiprocessing.active_children() if p.pid]

    table, killed = _grade_killing_a_worker(run, subs, out, busy, jobs=2)
    assert killed, "no worker was seen grading"
    assert _rows(table, FAULT_SET) == _rows(run["table"], FAULT_SET), "a killed worker changed the grades"
    # nothing outlives the run: the killed worker's kernel (its sandbox names the scratch folder) died with it
    left = _processes_naming(str(students))
    deadline = time.time() + 30
    while left and time.time() < deadline:
        time.sleep(0.5)
        left = _processes_naming(str(students))
    assert not left, f"processes outlived the killed worker: {left[:2]}"


def _processes_naming(text: str) -> list[str]:
    """Command lines of the running processes that mention ``text``."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                line = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if text in line:
                found.append(f"{entry.name}: {line[:200]}")
    return found


def test_a_dask_worker_killed_mid_run_loses_nothing(run, tmp_path):
    """--scheduler: a Dask scheduler and 2 worker processes started as the README says; one worker is
    killed while it grades. Dask runs its task again on a worker; the table equals the run without it."""
    from distributed import Client  # the test extra installs dask[distributed]

    subs = tmp_path / "subs"
    _copy_set(run, subs, FAULT_SET)
    scheduler_file = tmp_path / "scheduler.json"
    env = dict(os.environ)
    log = (tmp_path / "dask.log").open("w")
    procs = [subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_scheduler", "--scheduler-file",
                               str(scheduler_file), "--port", "0", "--dashboard-address", ":0"],
                              cwd=run["course"], stdout=log, stderr=log, env=env)]
    try:
        deadline = time.time() + 120
        while not scheduler_file.exists() and time.time() < deadline:
            time.sleep(0.2)
        procs.append(subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_worker", "--scheduler-file",
                                       str(scheduler_file), "--nworkers", "2", "--nthreads", "1",
                                       "--no-dashboard"], cwd=run["course"], stdout=log, stderr=log, env=env))
        address = json.loads(scheduler_file.read_text())["address"]
        with Client(address, timeout="60s") as client:
            client.wait_for_workers(2, timeout=180)
            pid_of = client.run(os.getpid)

            def busy() -> list[int]:
                return [pid_of[w] for w, keys in client.processing().items() if keys and w in pid_of]

            table, killed = _grade_killing_a_worker(run, subs, tmp_path / "out", busy, scheduler=address)
        assert killed, "no worker was seen grading: " + (tmp_path / "dask.log").read_text()[-2000:]
        assert _rows(table, FAULT_SET) == _rows(run["table"], FAULT_SET), "a killed worker changed the grades"
    finally:
        for proc in reversed(procs):
            proc.terminate()
        for proc in reversed(procs):
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
        log.close()
