"""Grading that is safe by default (issue 36): each hostile submission below beat the grader before.

Unit tests first (no kernel), then one grading run of the fixture assignment with every hostile
submission at once, in the sandbox, checked row by row and page by page.
"""

from __future__ import annotations

import base64
import copy
import csv
import io
import json
import os
import re
import subprocess
import sys
from contextlib import redirect_stdout
from pathlib import Path

import nbformat
import pytest

from course_tools.feedback import render_feedback_page
from course_tools.gradeexec import CapOutput
from course_tools.grading import GradeRow, Progress, Settings, grade, note_guards, summary, with_answers
from course_tools.integrity import load_submission, reconstruct, scan_notebook
from course_tools.sandbox import bwrap_command, bwrap_path
from course_tools.terminal import printable
from tests.test_grading_hardened import FIX, answered, make_course, with_answer

ROOT = Path(__file__).resolve().parents[1]
SANDBOXED = bwrap_path() is not None
IN_CI = bool(os.environ.get("CI"))
CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")  # every control character but \t and \n


# --------------------------------------------------------------------------- safe by default


def test_course_grade_refuses_without_a_sandbox_in_one_line(tmp_path, monkeypatch, capsys):
    """No bubblewrap: exit 2 and one line saying how to install it, before anything is graded."""
    from course_tools.cli import main

    monkeypatch.setenv("COURSE_NO_SANDBOX", "1")  # what the grader sees on a machine without bubblewrap
    (tmp_path / "s" / "ann" / FIX).mkdir(parents=True)
    assert main(["grade", str(tmp_path / "s"), "--assignment", FIX]) == 2
    out = capsys.readouterr()
    lines = [line for line in (out.out + out.err).splitlines() if line.strip()]
    assert len(lines) == 1 and "apt-get install bubblewrap" in lines[0] and "--no-sandbox" in lines[0], lines


def test_grade_refuses_without_a_sandbox_unless_told(tmp_path, monkeypatch):
    from course_tools.grading import NoSandbox

    monkeypatch.setenv("COURSE_NO_SANDBOX", "1")
    with pytest.raises(NoSandbox, match="bubblewrap"):
        grade(ROOT, tmp_path, FIX)


def test_the_sandbox_writes_only_its_folder_and_tmp(tmp_path):
    """The command line: bubblewrap's uncapped /dev/shm is never used; / and /dev end read-only."""
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "data.txt").write_text("x")
    (tmp_path / "rt").mkdir()
    (tmp_path / "rt" / "course_probe.py").write_text("# the grader's probe")
    cmd = bwrap_command("bwrap", tmp_path / "run", tmp_path / "rt", ["python"])
    assert "--dev" not in cmd, "bubblewrap's --dev mounts an uncapped tmpfs at /dev/shm"
    text = " ".join(cmd)
    assert "--remount-ro /dev --remount-ro /" in text and "--symlink /tmp/shm /dev/shm" in text
    assert f"--ro-bind {tmp_path / 'run' / 'data.txt'}" in text, "the release's files are read-only"
    assert f"--ro-bind {tmp_path / 'rt' / 'course_probe.py'}" in text, "the probe a fresh kernel runs is read-only"


# --------------------------------------------------------------------------- nothing poses as the grader


def test_printed_names_and_reasons_are_escaped():
    name = "\x1b[2J\x1b]0;pwned\x07ev\ril\u202e"
    assert printable(name) == "\\x1b[2J\\x1b]0;pwned\\x07ev\\x0dil\\u202e"
    assert printable("ünï 中文 plain") == "ünï 中文 plain"
    rows = [GradeRow(student=name, assignment=FIX, reason="got \x1b[31mred\x1b[0m", flags=["x\x07"])]
    assert not CONTROL.search(summary(rows)), summary(rows)
    buffer = io.StringIO()
    with redirect_stdout(buffer):
        meter = Progress(1, 0)
        meter.step(rows[0])
    assert not CONTROL.search(buffer.getvalue()), buffer.getvalue()


def test_the_reason_comes_from_the_grader_never_from_what_a_cell_printed():
    """Outputs that look like the guards' (an error named KernelDied, a KeyboardInterrupt, the grader's
    wording) change neither the reason nor the status: only the executor's own record does."""
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x")])
    nb.cells[0].outputs = [
        nbformat.v4.new_output("error", ename="KernelDied", evalue="the kernel died", traceback=[]),
        nbformat.v4.new_output("error", ename="KeyboardInterrupt", evalue="", traceback=[]),
        nbformat.v4.new_output("error", ename="CellTimeoutError", evalue="did not stop when interrupted", traceback=[]),
        nbformat.v4.new_output("stream", name="stdout", text="kernel died in cell test_add; time limit"),
    ]
    row = GradeRow(student="s", assignment=FIX)
    note_guards(row, nb)
    assert row.reason == "" and row.status == "graded", row
    nb.metadata["course_guards"] = {"died": ["test_add"], "timeout": ["norm"]}
    note_guards(row, nb)
    assert row.status == "review" and "kernel died in cell test_add" in row.reason and "norm" in row.reason


# --------------------------------------------------------------------------- bad input, clear rows


def _solved(assignment: str) -> nbformat.NotebookNode:
    read = lambda folder: nbformat.read(ROOT / folder / assignment / f"{assignment}.ipynb", as_version=4)
    return with_answers(read("notebooks"), read("solutions"))


@pytest.mark.parametrize("version", ["3", "4.0"])
def test_an_old_format_notebook_matches_its_cells(tmp_path, version):
    """04's solution saved as nbformat 3 or 4.0 (no cell ids): every cell found, nothing 'deleted', no
    locked cell taken for the student's own code (it was 0/16 review: '8 deleted cells restored')."""
    nb = _solved("04_masking")
    path = tmp_path / "04_masking.ipynb"
    if version == "3":
        path.write_text(nbformat.writes(nbformat.convert(copy.deepcopy(nb), 3), version=3))
    else:
        data = json.loads(nbformat.writes(nb))
        data["nbformat_minor"] = 0
        for cell in data["cells"]:
            cell.pop("id", None)
        path.write_text(json.dumps(data))
    release = nbformat.read(ROOT / "notebooks" / "04_masking" / "04_masking.ipynb", as_version=4)
    rebuilt = reconstruct(load_submission(path), release, "04_masking")
    assert rebuilt.notes == [] and rebuilt.answered == 6, rebuilt.notes
    assert scan_notebook(rebuilt.notebook, rebuilt.student_cells) == []
    assert [c.source for c in rebuilt.notebook.cells] == [c.source for c in nb.cells]


def test_a_lone_surrogate_and_widget_state_load_as_a_notebook(tmp_path):
    data = json.loads(nbformat.writes(_solved("04_masking")))
    data["metadata"]["widgets"] = {"application/vnd.jupyter.widget-state+json": {"state": {"x": {}}}}
    code = next(c for c in data["cells"] if c["cell_type"] == "code")
    code["outputs"] = [{"output_type": "display_data", "metadata": {},
                        "data": {"application/vnd.jupyter.widget-view+json": {"model_id": "x"}, "text/plain": "\ud800"}}]
    code["source"] = "".join(code["source"]) + "\n# \ud800"
    path = tmp_path / "04_masking.ipynb"
    path.write_text(json.dumps(data))  # JSON escapes the surrogate: valid JSON, invalid UTF-8 once decoded
    nb = load_submission(path)
    nbformat.writes(nb).encode("utf-8")  # raised UnicodeEncodeError before
    assert "widgets" not in nb.metadata
    assert "\ufffd" in nb.cells[[c.get("cell_type") for c in data["cells"]].index("code")].source


def test_the_notebooks_output_is_capped_as_a_whole():
    """Many outputs, each under its cell's cap, and one huge error value: the notebook stays small."""
    cells = [nbformat.v4.new_code_cell("print()") for _ in range(80)]
    for cell in cells:
        cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text="y" * 19_000)]
    cells[0].outputs = [nbformat.v4.new_output("error", ename="ValueError", evalue="v" * 30_000_000, traceback=["t"])]
    nb = nbformat.v4.new_notebook(cells=cells)
    nb, _ = CapOutput().preprocess(nb, {})
    assert len(nbformat.writes(nb)) < 1_200_000
    assert nb.cells[0].outputs[0]["ename"] == "ValueError" and len(nb.cells[0].outputs[0]["evalue"]) < 3000
    assert nb.metadata["course_output_capped"]["characters"] > 0
    row = GradeRow(student="s", assignment=FIX)
    note_guards(row, nb)
    assert "output capped" in row.reason, row


def test_a_sparse_gigabyte_is_never_read(tmp_path):
    """Hashing a student's folder reads files in blocks and skips the huge one: the grader's memory stays flat."""
    folder = tmp_path / "ann" / FIX
    folder.mkdir(parents=True)
    with open(folder / "big.bin", "wb") as handle:
        handle.truncate(2**30)
    (folder / f"{FIX}.ipynb").write_text("{}")
    code = ("import resource, sys; from pathlib import Path; from course_tools.grading import _submission_digest, "
            "oversized_files; f = Path(sys.argv[1]); before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss; "
            "_submission_digest('k', f); print(oversized_files(f)); "
            "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before)")
    result = subprocess.run([sys.executable, "-c", code, str(folder)], capture_output=True, text=True, cwd=ROOT,
                            check=True)
    found, grown_kib = result.stdout.splitlines()
    assert "big.bin (1,024 MiB)" in found
    assert int(grown_kib) < 64 * 1024, f"the grader read the file: {int(grown_kib) // 1024} MiB more resident"


# --------------------------------------------------------------------------- pages run no student code


def test_the_feedback_page_runs_nothing_a_submission_wrote():
    nb = nbformat.v4.new_notebook()
    answer = nbformat.v4.new_markdown_cell("My answer [click](javascript:alert(1)) <script>alert(2)</script>")
    answer.metadata["nbgrader"] = {"solution": True, "grade": True, "locked": False, "points": 1,
                                   "grade_id": "written", "schema_version": 3, "score": 0}
    code = nbformat.v4.new_code_cell("show()")
    code.outputs = [
        nbformat.v4.new_output("display_data", data={"text/html": "<b>bold</b><script>alert(3)</script>"
                                                                  "<img src=x onerror=alert(4)>"}),
        nbformat.v4.new_output("display_data", data={"text/markdown": "[m](javascript:alert(5))"}),
        nbformat.v4.new_output("display_data", data={"application/javascript": "alert(6)"}),
        nbformat.v4.new_output("display_data", data={"image/svg+xml": "<svg onload='alert(7)'></svg>"}),
        nbformat.v4.new_output("display_data", data={"image/png": base64.b64encode(b"\x89PNG figure").decode()}),
    ]
    test = nbformat.v4.new_code_cell('"""add: sums."""\nassert False')
    test.metadata["nbgrader"] = {"grade": True, "solution": False, "locked": True, "points": 1,
                                 "grade_id": "test_add", "schema_version": 3, "score": 0}
    test.outputs = [nbformat.v4.new_output("error", ename="AssertionError", evalue="got <script>alert(8)</script>",
                                           traceback=[])]
    nb.cells = [answer, code, test]
    html = render_feedback_page(nb, FIX, 0, 2)
    for n in range(1, 9):
        assert f"alert({n})" not in html or f"&lt;script&gt;alert({n})" in html, f"alert({n}) is live in the page"
    assert "onerror" not in html and "<svg onload" not in html
    assert not re.search(r"""<[a-z]+\s[^>]*(href|src)\s*=\s*["']?\s*javascript:""", html, re.I), "a javascript: link is live"
    assert "<b>bold</b>" in html and "data:image/png;base64," in html, "text and figures stay"
    assert "got &lt;script&gt;alert(8)&lt;/script&gt;" in html, "the test message is shown, as text"


# --------------------------------------------------------------------------- one hostile grading run

EXFIL_QUIET = '''import base64, linecache, traceback
STASH = []
def add(a, b):
    found = ["".join(entry[2]) for entry in list(linecache.cache.values()) if len(entry) > 2 and isinstance(entry[2], list)]
    found += ["".join(traceback.format_stack())]
    found += [str(line) for frame in traceback.extract_stack() for line in (frame.line, frame.filename)]
    text = "\\n".join(found)
    STASH.append(text)
    print("EXFIL-B64:" + base64.b64encode(text.encode()).decode())
    print("EXFIL-REV:" + text[::-1])
    return a + b'''
EXFIL_LOUD = '''import base64, sys
STASH = []
def add(a, b):
    ip = get_ipython()
    found = [str(x) for x in ip.user_ns.get("In", [])] + [str(x) for x in ip.user_ns.get("_ih", [])]
    frame = sys._getframe(1)
    while frame is not None:
        found += [repr(frame.f_code.co_consts), repr(frame.f_locals.get("raw_cell", ""))]
        frame = frame.f_back
    text = "\\n".join(found)
    STASH.append(text)
    print("EXFIL-B64:" + base64.b64encode(text.encode()).decode())
    return a + b'''
LATER = 'import base64\nprint("EXFIL-B64:" + base64.b64encode("\\n".join(STASH).encode()).decode())'
WIDGET = ('from comm import create_comm\n'
          'create_comm(target_name="jupyter.widget", data={"state": {"value": 1}, "buffer_paths": []})\n'
          'print("comm sent")')
WRITES = '''import errno, os, sys
runtime = os.path.dirname(sys.argv[sys.argv.index("-f") + 1])  # the kernel's connection file is there
for path in ("/newfile", "/dev/newfile", "/usr/newfile", runtime + "/course_probe.py"):
    try:
        with open(path, "ab") as handle:
            handle.write(b"x")
        print("WROTE", path)
    except OSError as error:
        print("BLOCKED", path, errno.errorcode.get(error.errno, "?"))
try:  # the runtime folder is the sandbox's own, capped: never the grader's disk
    with open(runtime + "/big", "wb") as handle:
        handle.write(b"x" * 4 * 2**20)
    print("WROTE runtime/big")
except OSError as error:
    print("BLOCKED runtime/big", errno.errorcode.get(error.errno, "?"))
folder = os.statvfs(runtime)
print("RUNTIME", folder.f_blocks * folder.f_frsize)
shm, tmp = os.statvfs("/dev/shm/"), os.statvfs("/tmp")
print("SHM", shm.f_blocks * shm.f_frsize, "SAME", os.stat("/dev/shm/").st_dev == os.stat("/tmp").st_dev)
'''
FAKE = ('class KernelDied(Exception):\n    pass\n'
        'print("kernel died in cell test_add (skipped); cell test_norm did not stop when interrupted; time limit")\n'
        'raise KernelDied("the kernel died while running this cell")')
ESCAPE_NAME = "esc\x1b[2Jname\x07"


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    assert SANDBOXED or not IN_CI, "CI installs bubblewrap: the sandbox must be tested there"
    if not SANDBOXED:
        pytest.skip("bubblewrap is not installed here (CI installs it)")
    base = tmp_path_factory.mktemp("safe")
    course = make_course(base / "course")
    subs = base / "submitted"
    surrogate = answered(course, extra=["print('lone')"])  # its saved output holds a lone surrogate
    surrogate["cells"][-1]["outputs"] = [{"output_type": "stream", "name": "stdout", "text": "\ud800 lone"}]
    surrogate["cells"][-1]["source"] += "  # \ud800"
    no_ids = json.loads(json.dumps(answered(course)))
    no_ids["nbformat_minor"] = 0
    for cell in no_ids["cells"]:
        cell.pop("id", None)
    notebooks = {
        "perfect": answered(course),
        "xss": answered(course, with_answer("add", "def add(a, b):\n    return '<script>alert(1)</script>'"), extra=[
            "from IPython.display import HTML, Markdown, display\n"
            "display(HTML('<script>alert(2)</script><img src=x onerror=alert(3)><a href=\"javascript:alert(4)\">x</a>'))\n"
            "display(Markdown('[y](javascript:alert(5)) <script>alert(6)</script>'))"]),
        "exfil_quiet": answered(course, with_answer("add", EXFIL_QUIET), extra=[LATER]),
        "exfil_loud": answered(course, with_answer("add", EXFIL_LOUD), extra=[LATER]),
        "fake_notes": answered(course, extra=[FAKE, "raise KeyboardInterrupt"]),
        "surrogate": surrogate,
        "widget": answered(course, extra=[WIDGET]),
        "many_outputs": answered(course, extra=["print('z' * 19_000)"] * 70),
        "big_error": answered(course, extra=["raise ValueError('e' * 30_000_000)"]),
        "writes": answered(course, extra=[WRITES]),
        "no_ids": no_ids,
        "sparse": answered(course),
        ESCAPE_NAME: answered(course),
    }
    for student, nb in notebooks.items():
        folder = subs / student / FIX
        folder.mkdir(parents=True)
        (folder / f"{FIX}.ipynb").write_text(json.dumps(nb))
    with open(subs / "sparse" / FIX / "weights.bin", "wb") as handle:
        handle.truncate(2**30)
    out = base / "graded"
    rows = grade(course, subs, FIX, out=out, jobs=2, settings=Settings(cell_timeout=20, interrupt_grace=4))
    with (out / "grades.csv").open(encoding="utf-8", errors="surrogateescape") as handle:
        table = {r["student"]: r for r in csv.DictReader(handle)}
    return dict(course=course, subs=subs, out=out, rows=rows, table=table)


def _page(run, student) -> str:
    return (run["out"] / "feedback" / student / FIX / f"{FIX}.html").read_text()


def _hidden_lines(run) -> list[str]:
    source = nbformat.read(run["course"] / "solutions" / FIX / f"{FIX}.ipynb", as_version=4)
    blocks = re.findall(r"### BEGIN HIDDEN TESTS\n(.*?)### END HIDDEN TESTS", "\n".join(c.source for c in source.cells),
                        re.S)
    lines = [line.strip() for block in blocks for line in block.splitlines() if len(line.strip()) >= 12]
    return lines + ["hidden_add_check", "hidden_norm_check", "hidden_mean_check"]



@pytest.mark.slow
def test_hostile_rows(hostile):
    t = hostile["table"]
    assert {r.status for r in hostile["rows"]} <= {"graded", "review"}, {s: (r["status"], r["reason"]) for s, r in t.items()}
    for student in ("perfect", "xss", "exfil_quiet", "fake_notes", "surrogate", "many_outputs", "big_error", "writes",
                    "no_ids", "sparse", ESCAPE_NAME):
        assert t[student]["sandboxed"] == "yes", t[student]
    assert float(t["xss"]["score"]) == 4 and t["xss"]["failed_tests"] == "test_add", t["xss"]
    for student in ("perfect", "exfil_quiet", "fake_notes", "surrogate", "many_outputs", "big_error", "writes",
                    "no_ids", "sparse", ESCAPE_NAME):
        assert float(t[student]["score"]) == 6, (student, t[student])


@pytest.mark.slow
def test_the_feedback_page_says_which_points_needed_hidden_tests(hostile):
    page = _page(hostile, "perfect")
    assert "points came from tests your own run could check in full" in page
    assert page.count("(hidden tests too)") == len(re.findall(r"### BEGIN HIDDEN TESTS", (
        hostile["course"] / "solutions" / FIX / f"{FIX}.ipynb").read_text())), "each test with hidden parts is marked"


@pytest.mark.slow
def test_hidden_tests_stay_hidden_however_they_are_printed(hostile):
    """The hidden tests' text never reaches the kernel (so no encoding gets it out), and code that
    reached for frames has its later outputs withheld from the page."""
    secrets = _hidden_lines(hostile)
    for student in ("exfil_quiet", "exfil_loud"):
        page = _page(hostile, student)
        blobs = re.findall(r"EXFIL-B64:([A-Za-z0-9+/=]+)", page)
        # a blob may be cut by the output caps: decode what is whole
        decoded = "\n".join(base64.b64decode(b[:len(b) // 4 * 4]).decode("utf-8", "replace") for b in blobs)
        reversed_ = "\n".join(m[::-1] for m in re.findall(r"EXFIL-REV:([^<]*)", page))
        for secret in secrets:
            assert secret not in page and secret not in decoded and secret not in reversed_, (student, secret)
    assert re.search(r"EXFIL-B64:", _page(hostile, "exfil_quiet")), "the quiet one ran and printed"
    quiet = hostile["table"]["exfil_quiet"]
    assert quiet["status"] == "graded" and float(quiet["score"]) == 6, quiet  # it read no frames: never held
    loud = hostile["table"]["exfil_loud"]
    assert loud["status"] == "review" and "held for review" in loud["reason"], loud
    assert not re.search(r"EXFIL-B64:[A-Za-z0-9+/=]{8}", _page(hostile, "exfil_loud")), "held: outputs withheld"
    assert "withheld" in _page(hostile, "exfil_loud")


@pytest.mark.slow
def test_pages_run_no_student_code(hostile):
    page = _page(hostile, "xss")
    for n in range(1, 7):
        assert f"<script>alert({n})" not in page, f"alert({n}) is live in the feedback page"
    # (the student's own code is shown, escaped: only live markup counts)
    assert not re.search(r"<[a-z]+[^>]*\sonerror\s*=", page, re.I), "an event handler is live"
    assert not re.search(r"""<[a-z]+\s[^>]*(href|src)\s*=\s*["']?\s*javascript:""", page, re.I), "a javascript: link is live"
    assert "&lt;script&gt;alert(1)" in page, "the failing test's message is shown as text"


@pytest.mark.slow
def test_reasons_say_only_what_happened(hostile):
    row = hostile["table"]["fake_notes"]
    assert row["status"] == "graded" and row["reason"] == "all tests pass", row


@pytest.mark.slow
def test_bad_bytes_widgets_and_sizes_get_clear_rows(hostile):
    t = hostile["table"]
    assert t["surrogate"]["status"] == "graded" and float(t["surrogate"]["score"]) == 6, t["surrogate"]
    assert t["widget"]["status"] in ("graded", "review") and float(t["widget"]["score"]) == 6, t["widget"]
    assert "comm sent" in (hostile["out"] / "graded" / "widget" / FIX / f"{FIX}.ipynb").read_text()
    assert "output capped" in t["many_outputs"]["reason"], t["many_outputs"]
    for student in ("many_outputs", "big_error"):
        assert (hostile["out"] / "graded" / student / FIX / f"{FIX}.ipynb").stat().st_size < 1_500_000, student
        assert len(_page(hostile, student)) < 2_500_000, student
    assert "1 file(s) over 100 MiB not read: 99_fixture/weights.bin (1,024 MiB)" in t["sparse"]["reason"], t["sparse"]
    assert t["no_ids"]["status"] == "graded" and t["no_ids"]["reason"] == "all tests pass", t["no_ids"]


@pytest.mark.slow
def test_only_the_working_folder_and_tmp_are_writable(hostile):
    text = (hostile["out"] / "graded" / "writes" / FIX / f"{FIX}.ipynb").read_text()
    seen = re.findall(r"(?:WROTE|BLOCKED) \S+ ?\w*", text)
    for path in ("/newfile", "/dev/newfile", "/usr/newfile", r"\S+/course_probe\.py"):
        assert re.search(f"BLOCKED {path} ", text), (path, seen)
    assert "BLOCKED runtime/big ENOSPC" in text, seen
    folder = re.search(r"RUNTIME (\d+)", text)
    assert folder and int(folder.group(1)) <= 2**20, ("the runtime folder is not the sandbox's capped own", folder)
    shm = re.search(r"SHM (\d+) SAME (\w+)", text)
    assert shm and shm.group(2) == "True" and int(shm.group(1)) <= 512 * 2**20, ("/dev/shm is not the capped /tmp", shm)


@pytest.mark.slow
def test_a_row_graded_unsandboxed_is_not_served_to_a_sandboxed_run(hostile, tmp_path):
    subs = tmp_path / "subs"
    (subs / "solo" / FIX).mkdir(parents=True)
    (subs / "solo" / FIX / f"{FIX}.ipynb").write_text(json.dumps(answered(hostile["course"])))
    out = tmp_path / "out"
    settings = Settings(cell_timeout=20, notebook_timeout=120)
    first = grade(hostile["course"], subs, FIX, out=out, jobs=1, settings=Settings(**{**settings.__dict__, "sandbox": False}))
    assert not first[0].sandboxed and "not sandboxed" in first[0].reason
    second = grade(hostile["course"], subs, FIX, out=out, jobs=1, settings=settings)
    assert second[0].sandboxed and "not sandboxed" not in second[0].reason, second[0]
