"""The hardened exchange (course_tools/exchange.py) against students who pose as others.

Runs as root: it creates an instructor and three students as temporary Unix users (removed
afterwards), lays out an exchange with `prepare_exchange`, and runs nbgrader's own commands as
each of them (`setpriv`), so every permission is the kernel's, not a simulation.
"""

from __future__ import annotations

import atexit
import json
import os
import pwd
import secrets
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import nbformat
import pytest

from course_tools.exchange import audit_exchange, copy_owned_tree, prepare_exchange, SubmissionRefused
from course_tools.shared_python import python_c, write_scripts

BIN = Path(tempfile.mkdtemp(prefix="cx-bin-"))  # nbgrader and alembic, runnable by every user (tests/test_hub.py too)
atexit.register(shutil.rmtree, BIN, True)
COURSE = "cx-course"
assert os.geteuid() == 0 or not os.environ.get("CI"), "CI runs as root: the exchange's owner checks must be tested there"
needs_root = pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("useradd") or not shutil.which("setpriv"),
                                reason="needs root, useradd and setpriv (creates Unix users)")


def _run(*cmd, **kw):
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, **kw)


class Users:
    """Temporary Unix users with unique names; `remove()` deletes them and their homes."""

    def __init__(self):
        self.tag = secrets.token_hex(3)
        self.names: list[str] = []
        self.groups: list[str] = []

    def group(self, role: str) -> str:
        name = f"cx{self.tag}{role}"
        assert _run("groupadd", name).returncode == 0
        self.groups.append(name)
        return name

    def add(self, role: str, group: str | None = None) -> str:
        name = f"cx{self.tag}{role}"
        cmd = ["useradd", "-m", "-s", "/bin/sh", name] + (["-g", group] if group else [])
        result = _run(*cmd)
        assert result.returncode == 0, result.stderr
        self.names.append(name)
        os.chmod(Path("/home") / name, 0o700)
        return name

    def remove(self):
        for name in self.names:
            _run("userdel", "-r", name)
        for name in self.groups:
            _run("groupdel", name)


def as_user(user: str, *cmd, cwd=None, check=True):
    """Run CMD as USER (its own uid, gid and groups; a clean environment, this venv on PATH), in CWD or its home."""
    result = _run("setpriv", f"--reuid={user}", f"--regid={pwd.getpwnam(user).pw_gid}", "--init-groups",
                  "--reset-env", "env", f"PATH={BIN}:/usr/bin:/bin", *cmd, cwd=cwd or f"/home/{user}")
    if check:
        assert result.returncode == 0, f"{cmd} as {user} failed:\n{result.stdout}\n{result.stderr}"
    return result


def py_as(user: str, code: str, **kw):
    """Run Python CODE as USER; return the CompletedProcess (stdout: what it printed)."""
    return as_user(user, *python_c(textwrap.dedent(code)), **kw)


def notebook(answer: str) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(answer, id="answer")]
    return nb


pytestmark_slow = pytest.mark.slow  # creates Unix users and runs nbgrader a dozen times (~30 s)


def class_staff(users: "Users", base: Path) -> tuple[str, str]:
    """Make ``base`` and the shared scripts reachable by every user; add the instructors' group and an
    instructor in it. Returns (group, instructor)."""
    os.chmod(base, 0o755)
    os.chmod(BIN, 0o755)
    write_scripts(BIN, ["nbgrader", "alembic"])
    teachers = users.group("teach")
    return teachers, users.add("inst", group=teachers)


@pytest.fixture(scope="module")
def klass():
    """An instructor, students A, B (plain nbgrader submit) and C, an exchange and a released `ps1`."""
    if os.geteuid() != 0 or not shutil.which("useradd") or not shutil.which("setpriv"):
        pytest.skip("needs root, useradd and setpriv")
    users = Users()
    base = Path(tempfile.mkdtemp(prefix="cx-exchange-"))
    try:
        teachers, instructor = class_staff(users, base)
        a, b, c = users.add("a"), users.add("b"), users.add("c")
        root = base / "exchange"
        prepare_exchange(root, COURSE, instructor, teachers)
        course = base / "course"
        (course / "release" / "ps1").mkdir(parents=True)
        nbformat.write(notebook("answer = None"), course / "release" / "ps1" / "ps1.ipynb")
        (course / "nbgrader_config.py").write_text(textwrap.dedent(f"""\
            c = get_config()
            c.CourseDirectory.course_id = {COURSE!r}
            c.Exchange.root = {str(root)!r}
            c.ExchangeFactory.collect = "course_tools.exchange.OwnerCheckedCollect"
            c.ExchangeFactory.release_feedback = "course_tools.exchange.PrivateReleaseFeedback"
            """))
        shutil.chown(course, instructor, teachers)
        for path in course.rglob("*"):
            shutil.chown(path, instructor, teachers)
        os.chmod(course, 0o700)
        as_user(instructor, "nbgrader", "release_assignment", "ps1", cwd=course)
        for student, submit in [(a, "PrivateSubmit"), (b, None), (c, "PrivateSubmit")]:
            config = [f"c = get_config()", f"c.CourseDirectory.course_id = {COURSE!r}",
                      f"c.Exchange.root = {str(root)!r}"]
            if submit:
                config.append(f'c.ExchangeFactory.submit = "course_tools.exchange.{submit}"')
            home = Path("/home") / student
            (home / "nbgrader_config.py").write_text("\n".join(config) + "\n")
            shutil.chown(home / "nbgrader_config.py", student)
            as_user(student, "nbgrader", "fetch_assignment", "ps1")
            work = home / "ps1" / "ps1.ipynb"
            nb = nbformat.read(work, as_version=4)
            nb.cells[0].source = f"answer = 'work of {student}'"
            nbformat.write(nb, work)
            as_user(student, "nbgrader", "submit", "ps1")
        yield {"root": root, "course": course, "instructor": instructor, "a": a, "b": b, "c": c,
               "inbound": root / COURSE / "inbound", "feedback": root / COURSE / "feedback"}
    finally:
        users.remove()
        shutil.rmtree(base, ignore_errors=True)


def _own_folder(student: str, inbound: Path) -> Path:
    """The real submission of STUDENT (found as root, who can list inbound)."""
    [folder] = [p for p in inbound.iterdir() if p.name.startswith(student + "+") and p.lstat().st_uid == _uid(student)]
    return folder


def _uid(user):
    return pwd.getpwnam(user).pw_uid


@pytestmark_slow
def test_exchange_layout_is_what_nbgrader_documents(klass):
    """The exchange has the modes `prepare_exchange` promises, and nbgrader's release kept them."""
    assert audit_exchange(klass["root"], COURSE) == []
    os.chmod(klass["feedback"], 0o755)
    try:
        assert any("feedback" in p and "755" in p for p in audit_exchange(klass["root"], COURSE))
    finally:
        os.chmod(klass["feedback"], 0o711)


@pytestmark_slow
def test_students_cannot_list_read_or_move_others_work(klass):
    """C cannot list inbound or feedback, read A's submission by its exact name, or move the course."""
    a_folder = _own_folder(klass["a"], klass["inbound"])
    assert oct(a_folder.stat().st_mode & 0o7777) == "0o770"
    probe = py_as(klass["c"], f"""
        import os
        for what, act in [("list inbound", lambda: os.listdir({str(klass['inbound'])!r})),
                          ("list feedback", lambda: os.listdir({str(klass['feedback'])!r})),
                          ("read A", lambda: open({str(a_folder / 'ps1.ipynb')!r}).read()),
                          ("list A", lambda: os.listdir({str(a_folder)!r})),
                          ("move course", lambda: os.rename({str(klass['root'] / COURSE)!r}, {str(klass['root'] / 'x')!r})),
                          ("home of A", lambda: os.listdir('/home/{klass['a']}'))]:
            try:
                act()
                print(what, "ALLOWED")
            except PermissionError:
                print(what, "denied")
        """)
    lines = probe.stdout.split("\n")
    for what in ["list inbound", "list feedback", "read A", "list A", "move course", "home of A"]:
        assert f"{what} denied" in lines, probe.stdout


@pytestmark_slow
def test_collect_refuses_every_spoof_and_collects_the_real_work(klass):
    """Plants in A's name (a folder, `submit --student`, a link to A's cache) and a file slipped into
    B's open folder are refused and named; A's and C's own work is collected, B's tampered one is not."""
    a, b, c, inbound = klass["a"], klass["b"], klass["c"], klass["inbound"]
    later = "2099-01-01 00:00:00.000000 UTC"
    planted = inbound / f"{a}+ps1+{later}+plant"
    py_as(c, f"""
        import os, json
        os.mkdir({str(planted)!r}); os.chmod({str(planted)!r}, 0o777)
        open({str(planted / 'ps1.ipynb')!r}, 'w').write({json.dumps(nbformat.writes(notebook("answer = 'C posing as A'")))!r})
        open({str(planted / 'timestamp.txt')!r}, 'w').write({later!r})
        """)
    # nbgrader's own client in A's name
    as_user(c, "nbgrader", "submit", "ps1", "--student", a)
    # a link in A's name to A's own cache (an old submission, owned by A, under a later timestamp)
    cache = Path("/home") / a / ".local/share/jupyter/nbgrader_cache" / COURSE
    [cached] = list(cache.iterdir())
    link = inbound / f"{a}+ps1+2098-01-01 00:00:00.000000 UTC+link"
    py_as(c, f"import os; os.symlink({str(cached)!r}, {str(link)!r})")
    # B submitted with plain nbgrader (folder 0777): C slips a file into it
    b_folder = _own_folder(b, inbound)
    py_as(c, f"open({str(b_folder / 'extra.py')!r}, 'w').write('x = 1')")

    result = as_user(klass["instructor"], "nbgrader", "collect", "ps1", "--update", cwd=klass["course"], check=False)
    out = result.stdout + result.stderr
    assert result.returncode != 0, out
    assert f"REFUSED {planted}" in out and f"owned by {c}" in out, out
    assert f"REFUSED {link}" in out and "not a plain folder" in out, out
    assert out.count(f"it names {a} but") == 3, out
    assert f"REFUSED {b_folder}" in out and "extra.py is owned by " + c in out, out
    submitted = klass["course"] / "submitted"
    assert nbformat.read(submitted / a / "ps1" / "ps1.ipynb", as_version=4).cells[0].source == f"answer = 'work of {a}'"
    assert nbformat.read(submitted / c / "ps1" / "ps1.ipynb", as_version=4).cells[0].source == f"answer = 'work of {c}'"
    assert not (submitted / b).exists(), "a tampered submission must not be collected"
    assert not [p for p in submitted.rglob(".collecting-*")], "no staging folder left behind"


@pytestmark_slow
def test_feedback_reaches_only_its_student(klass):
    """Released feedback is fetched by its own student; C can neither list nor replace A's page."""
    course, a, c = klass["course"], klass["a"], klass["c"]
    for student in (a, c):
        folder = course / "feedback" / student / "ps1"
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copy(course / "submitted" / student / "ps1" / "timestamp.txt", folder)
        shutil.copy(course / "submitted" / student / "ps1" / "submission_secret.txt", folder)
        (folder / "ps1.html").write_text(f"<p>feedback for {student}</p>")
    for path in [course / "feedback", *(course / "feedback").rglob("*")]:
        shutil.chown(path, klass["instructor"])
    as_user(klass["instructor"], "nbgrader", "release_feedback", "ps1", cwd=course)
    pages = list(klass["feedback"].iterdir())
    assert len(pages) == 2 and all(oct(p.stat().st_mode & 0o777) == "0o644" for p in pages)
    for student in (a, c):
        as_user(student, "nbgrader", "fetch_feedback", "ps1")
        [page] = (Path("/home") / student / "ps1" / "feedback").rglob("ps1.html")
        assert page.read_text() == f"<p>feedback for {student}</p>"
    a_page = [p for p in pages if "for " + a in p.read_text()][0]
    probe = py_as(c, f"""
        try:
            open({str(a_page)!r}, 'w').write('forged')
            print("ALLOWED")
        except PermissionError:
            print("denied")
        """)
    assert probe.stdout.strip() == "denied"


def test_copy_rechecks_what_it_reads(tmp_path):
    """A folder whose file belongs to someone else, or is a link, is refused and nothing is written."""
    if os.geteuid() != 0:
        pytest.skip("needs root to give a file another owner")
    src = tmp_path / "sub"
    src.mkdir()
    (src / "a.ipynb").write_text("{}")
    uid = os.getuid()
    assert copy_owned_tree(str(src), str(tmp_path / "copy"), uid, "me") == 2
    assert (tmp_path / "copy" / "a.ipynb").read_text() == "{}"
    os.chown(src / "a.ipynb", 65534, -1)
    with pytest.raises(SubmissionRefused, match="a.ipynb is owned by"):
        copy_owned_tree(str(src), None, uid, "me")
    os.chown(src / "a.ipynb", uid, -1)
    (src / "link").symlink_to("/etc/passwd")
    with pytest.raises(SubmissionRefused, match="link is a symbolic link"):
        copy_owned_tree(str(src), None, uid, "me")
