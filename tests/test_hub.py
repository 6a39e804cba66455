"""A class on the course hub, end to end (root, 127.0.0.1 only): release, fetch, submit, a plant, collect,
grade, feedback.

An instructor and three students are temporary Unix users with passwords (PAM). `course hub` runs
JupyterHub for their roster; each student's requests go through the hub's proxy to their own
server's nbgrader endpoints (what the Assignment List calls): fetch, save answers (perfect, one
mistake, blank) through the contents API, submit. Student C plants a submission in A's name;
the instructor collects (C's plant refused and named), `course grade --gradebook` grades in the
sandbox, the instructor releases feedback and each student fetches their own page.
"""

from __future__ import annotations

import json
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat
import pytest

from course_tools.grading import with_answers
from test_browser import _menu
from test_browser import _wait as _until_js
from test_browser import browser  # noqa: F401 (the fixture)
from test_exchange import Users, _run, as_user, class_staff, py_as

slow = pytest.mark.slow  # a hub, four servers and a grading run of 04_masking (under a minute here)

ROOT = Path(__file__).resolve().parents[1]
A_ID = "04_masking"
COURSE = "pytorch-nlp-course"
PROXY = ROOT / "hub" / "node_modules" / ".bin" / "configurable-http-proxy"


def _port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait(predicate, what: str, limit: float = 180):
    """Poll PREDICATE until it is truthy (a limit only against a hang; no assertion depends on time)."""
    end = time.monotonic() + limit
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"gave up waiting for {what}")


@pytest.fixture(scope="module")
def klass():
    if os.geteuid() != 0 or not shutil.which("useradd") or not PROXY.exists():
        assert not os.environ.get("CI"), "CI runs as root and `make test` installs the proxy: the hub must be tested there"
        pytest.skip("needs root, useradd and hub/node_modules (make hub-deps)")
    import requests

    users = Users()
    base = Path(tempfile.mkdtemp(prefix="cx-hub-"))
    hub = None
    try:
        teachers, inst = class_staff(users, base)
        a, b, c = users.add("a"), users.add("b"), users.add("c")
        d = users.add("d")   # the browser's student (test_a_student_in_chromium), after the others
        passwords = {name: secrets.token_urlsafe(12) for name in (inst, a, b, c, d)}
        chpasswd = subprocess.run(["chpasswd"], input="".join(f"{n}:{p}\n" for n, p in passwords.items()),
                                  text=True, capture_output=True)
        assert chpasswd.returncode == 0, chpasswd.stderr
        course = course_copy(base, inst, teachers)
        exchange = base / "exchange"
        hub, url, token = start_hub(base, inst, [a, b, c, d], course, exchange)

        def up():
            try:
                return requests.get(f"{url}/hub/api", timeout=5).status_code == 200
            except requests.ConnectionError:
                return hub.poll() is not None and pytest.fail((base / "hub.log").read_text()[-3000:])
        _wait(up, "the hub")
        admin = requests.Session()
        admin.headers["Authorization"] = f"token {token}"
        yield {"url": url, "admin": admin, "inst": inst, "a": a, "b": b, "c": c, "d": d, "passwords": passwords,
               "course": course, "exchange": exchange, "log": base / "hub.log", "hub": hub}
    finally:
        if hub is not None:
            stop_hub(hub, url, token, users.names)
        users.remove()
        shutil.rmtree(base, ignore_errors=True)


def course_copy(base: Path, instructor: str, group: str) -> Path:
    """The instructor's course folder for the hub: 04_masking's solution and release, the course's config."""
    course = base / "course"
    for folder in ("solutions", "notebooks"):
        shutil.copytree(ROOT / folder / A_ID, course / folder / A_ID)
    shutil.copy(ROOT / "nbgrader_config.py", course / "nbgrader_config.py")
    subprocess.run(["chown", "-R", f"{instructor}:{group}", str(course)], check=True)
    return course


def start_hub(base: Path, instructor: str, students: list[str], course: Path, exchange: Path):
    """Start `course hub` on 127.0.0.1 for this roster (log in ``base/hub.log``); return (process, url, the
    course service's admin token). The caller waits until it answers and stops it with ``stop_hub``."""
    roster = base / "roster.csv"
    roster.write_text(f"username,role\n{instructor},instructor\n" + "".join(f"{s},student\n" for s in students))
    token, url = secrets.token_hex(16), f"http://127.0.0.1:{_port()}"
    env = {**os.environ, "COURSE_HUB_SERVICE_TOKEN": token, "COURSE_HUB_INTERNAL_PORTS": f"{_port()},{_port()}"}
    with open(base / "hub.log", "w") as log:
        hub = subprocess.Popen([str(Path(sys.executable).with_name("course")), "hub", "--roster", str(roster),
                                "--bind", url, "--exchange", str(exchange), "--course-dir", str(course),
                                "--state", str(base / "state")], env=env, stdout=log, stderr=subprocess.STDOUT,
                               start_new_session=True)
    return hub, url, token


def stop_hub(hub, url: str, token: str, names, timeout: float = 60) -> None:
    """Stop every user's server through the hub's API, then the hub and its proxy."""
    import requests

    for name in names:
        try:
            requests.delete(f"{url}/hub/api/users/{name}/server", headers={"Authorization": f"token {token}"},
                            timeout=timeout)
        except requests.RequestException:
            pass
    os.killpg(hub.pid, 15)
    try:
        hub.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(hub.pid, 9)


def _server(klass, name: str):
    """Start NAME's server through the hub's API; return a session that reaches it with NAME's own token."""
    import requests

    url, admin = klass["url"], klass["admin"]
    token = admin.post(f"{url}/hub/api/users/{name}/tokens", json={"note": "test"}).json()["token"]
    started = admin.post(f"{url}/hub/api/users/{name}/server")
    assert started.status_code in (201, 202), started.text

    def ready():
        state = admin.get(f"{url}/hub/api/users/{name}").json()
        return state.get("servers", {}).get("", {}).get("ready")
    _wait(ready, f"{name}'s server")
    session = requests.Session()
    session.headers["Authorization"] = f"token {token}"
    return session, f"{url}/user/{name}"


@slow
def test_pam_login(klass):
    """The hub's login page takes a student's Unix password and refuses a wrong one."""
    import requests

    url, a = klass["url"], klass["a"]
    session = requests.Session()
    session.get(f"{url}/hub/login")
    xsrf = session.cookies.get("_xsrf")
    wrong = session.post(f"{url}/hub/login", data={"username": a, "password": "nope", "_xsrf": xsrf},
                         allow_redirects=False)
    assert wrong.status_code == 403, wrong.status_code
    right = session.post(f"{url}/hub/login", data={"username": a, "password": klass["passwords"][a], "_xsrf": xsrf},
                         allow_redirects=False)
    assert right.status_code == 302, right.status_code
    assert session.get(f"{url}/hub/api/user").json()["name"] == a


@slow
def test_a_class_end_to_end(klass):
    """Release, fetch/answer/submit through each student's server, a plant, collect, grade, feedback."""
    from nbgrader.api import Gradebook

    course, inst, a, b, c = klass["course"], klass["inst"], klass["a"], klass["b"], klass["c"]
    nb_env = ["env", f"COURSE_EXCHANGE={klass['exchange']}"]
    _release(klass)

    release = nbformat.read(ROOT / "notebooks" / A_ID / f"{A_ID}.ipynb", as_version=4)
    solution = nbformat.read(ROOT / "solutions" / A_ID / f"{A_ID}.ipynb", as_version=4)
    perfect = with_answers(release, solution)
    wrong = nbformat.from_dict(json.loads(json.dumps(perfect)))
    for cell in wrong.cells:
        if cell.get("id") == "masked_reductions":
            assert "weights.sum(1).clamp(min=1)" in cell.source
            cell.source = cell.source.replace("weights.sum(1).clamp(min=1)", "x.shape[1]")
    answers = {a: perfect, b: wrong, c: release}
    servers = {}
    for student, nb in answers.items():
        session, base = _server(klass, student)
        servers[student] = (session, base)
        listed = session.get(f"{base}/assignments", params={"course_id": COURSE}).json()
        assert listed["success"] and [x["assignment_id"] for x in listed["value"]] == [A_ID], listed
        fetched = session.post(f"{base}/assignments/fetch", params={"course_id": COURSE, "assignment_id": A_ID})
        assert fetched.json()["success"], fetched.text
        path = f"{base}/api/contents/{A_ID}/{A_ID}.ipynb"
        assert session.get(path).status_code == 200
        saved = session.put(path, json={"type": "notebook", "format": "json", "content": json.loads(nbformat.writes(nb))})
        assert saved.status_code == 200, saved.text
        submitted = session.post(f"{base}/assignments/submit", params={"course_id": COURSE, "assignment_id": A_ID})
        assert submitted.json()["success"], submitted.text
        # a student's server cannot reach the formgrader
        assert session.get(f"{base}/formgrader").status_code == 404

    inbound = klass["exchange"] / COURSE / "inbound"
    plant = inbound / f"{a}+{A_ID}+2099-01-01 00:00:00.000000 UTC+plant"
    py_as(c, f"""
        import os
        os.mkdir({str(plant)!r})
        open({str(plant / (A_ID + '.ipynb'))!r}, 'w').write({nbformat.writes(release)!r})
        """)
    collected = as_user(inst, *nb_env, "nbgrader", "collect", A_ID, cwd=course, check=False)
    out = collected.stdout + collected.stderr
    assert collected.returncode != 0 and f"REFUSED {plant}" in out and f"owned by {c}" in out, out

    graded = subprocess.run([str(Path(sys.executable).with_name("course")), "grade", "grading/submitted",
                             "--assignment", A_ID, "--gradebook", "--notebook-timeout", "1800", "--jobs", "2"],
                            cwd=course, capture_output=True, text=True, timeout=900)
    assert "gradebook: 3 student(s) recorded" in graded.stdout, graded.stdout + graded.stderr
    subprocess.run(["chown", "-R", f"{inst}:", str(course / "grading")], check=True)
    as_user(inst, *nb_env, "nbgrader", "release_feedback", A_ID, cwd=course)

    with Gradebook(f"sqlite:///{course / 'grading' / 'gradebook.db'}") as gb:
        total = gb.find_assignment(A_ID).max_score
        scores = {s: gb.find_submission(A_ID, s).score for s in (a, b, c)}
    assert scores[a] == total, "A's grade is A's own work, not C's blank plant"
    assert 0 < scores[b] < total and scores[c] == 0, scores

    hidden = []
    for cell in solution.cells:
        if "### BEGIN HIDDEN TESTS" in cell.source:
            body = cell.source.split("### BEGIN HIDDEN TESTS")[1].split("### END HIDDEN TESTS")[0]
            hidden += [line.strip() for line in body.splitlines() if len(line.strip()) > 30]
    assert hidden
    pages = {}
    for student, (session, base) in servers.items():
        got = session.post(f"{base}/assignments/fetch_feedback", params={"course_id": COURSE, "assignment_id": A_ID})
        assert got.json()["success"], got.text
        [page] = (Path("/home") / student / A_ID / "feedback").rglob(f"{A_ID}.html")
        pages[student] = page.read_bytes()
        mine = (course / "grading" / A_ID / "feedback" / student / A_ID / f"{A_ID}.html").read_bytes()
        assert pages[student].replace(b'src="../_mathjax/', b'src="../../_mathjax/') == mine, \
            f"{student} fetched someone else's feedback"
        # the page typesets offline where the student opens it: its MathJax URL resolves on their own server
        assert b'src="../_mathjax/MathJax.js' in pages[student]
        link = Path("/home") / student / A_ID / "feedback" / "_mathjax"
        assert link.is_symlink() and (link / "MathJax.js").is_file()
        served = session.get(f"{base}/api/contents/{A_ID}/feedback/_mathjax/MathJax.js", params={"type": "file"})
        assert served.status_code == 200 and "MathJax" in served.json()["content"][:2000], \
            f"{student}'s own server cannot read the page's MathJax: {served.status_code}"
        text = pages[student].decode()
        assert "BEGIN HIDDEN TESTS" not in text and not [line for line in hidden if line in text]
    assert len(set(pages.values())) == 3

    # C, a student, as their own Unix user: nothing of the instructor's, nor of A's, can be read
    probe = py_as(c, f"""
        import os, sqlite3
        for path in {[str(course / "solutions" / A_ID / f"{A_ID}.ipynb"), str(course / "grading" / "gradebook.db"),
                      str(course / "nbgrader_config.py"), str(Path("/home") / a / A_ID / f"{A_ID}.ipynb")]!r}:
            try:
                open(path, "rb").read(1)
                print("READ", path)
            except OSError as error:
                print("refused", error.errno, path)
        for folder in {[str(course), str(course / "grading"), f"/home/{a}", f"/home/{inst}"]!r}:
            try:
                os.listdir(folder)
                print("LISTED", folder)
            except OSError as error:
                print("refused", error.errno, folder)
        """)
    assert "READ" not in probe.stdout and "LISTED" not in probe.stdout and probe.stdout.count("refused") == 8, \
        probe.stdout
    # ... nor, through the hub with C's own token, the instructor's server (where the formgrader runs)
    session_i, base_i = _server(klass, inst)
    assert session_i.get(f"{base_i}/api/contents").status_code == 200, "the instructor reaches their own server"
    session_c, _ = servers[c]
    for path in ("api/contents", "formgrader", "api/contents/grading/gradebook.db"):
        reply = session_c.get(f"{klass['url']}/user/{inst}/{path}", allow_redirects=False)
        assert reply.status_code == 403, (path, reply.status_code, reply.text[:300])


def _release(klass) -> None:
    """The instructor releases 04_masking into the exchange (once, whichever test comes first)."""
    if not (klass["exchange"] / COURSE / "outbound" / A_ID).is_dir():
        as_user(klass["inst"], "env", f"COURSE_EXCHANGE={klass['exchange']}", "nbgrader", "release_assignment", A_ID,
                cwd=klass["course"])


@slow
def test_a_student_in_chromium(klass, browser, screenshot):  # noqa: F811 (browser is the fixture)
    """Student D in Chromium: logs in on the hub's login page, gets JupyterLab with the student view, sees
    04_masking in the Assignment List, fetches it, validates it there (the course's report: the blank
    release fails its tests) and submits; the submission reaches the inbound folder as D's."""
    url, d = klass["url"], klass["d"]
    _release(klass)
    browser.get(f"{url}/hub/login")
    _until_js(browser, "!!document.getElementById('username_input')", "the hub's login form")
    screenshot(browser, "hub-login")
    browser.execute_script("""
        document.getElementById('username_input').value = arguments[0];
        document.getElementById('password_input').value = arguments[1];
        document.getElementById('login_submit').click();""", d, klass["passwords"][d])
    # the hub spawns D's server and sends the browser to its JupyterLab (a cap on polling, not a timed wait)
    _until_js(browser, "[...document.querySelectorAll('.lm-MenuBar-item')].some(e => e.textContent.trim() === 'Nbgrader')",
              "JupyterLab on D's own server, with the Nbgrader menu", 600)
    assert browser.current_url.startswith(f"{url}/user/{d}/lab"), browser.current_url
    config = browser.execute_script("return JSON.parse(document.getElementById('jupyter-config-data').textContent)")
    assert "@jupyter/nbgrader:formgrader" in config["disabledExtensions"], "a student must not get the formgrader"
    items = _menu(browser, "Nbgrader", click="Assignment List")
    assert "Assignment List" in items and "Formgrader" not in items, items
    button = "[...document.querySelectorAll('#{list} button')].find(b => b.innerText.trim() === '{text}')"
    _until_js(browser, f"(b => b && b.closest('.list_item').textContent.includes('{A_ID}'))({button.format(list='released_assignments_list', text='Fetch')})",
              "04_masking with a Fetch button in D's Assignment List", 120)
    screenshot(browser, "hub-assignment-list")
    browser.execute_script(f"{button.format(list='released_assignments_list', text='Fetch')}.click()")
    _until_js(browser, f"!!{button.format(list='fetched_assignments_list', text='Validate')}",
              "04_masking among D's fetched assignments, with a Validate button", 120)
    assert (Path("/home") / d / A_ID / f"{A_ID}.ipynb").is_file(), "fetch wrote the notebook into D's home"
    browser.execute_script(f"{button.format(list='fetched_assignments_list', text='Validate')}.click()")
    message = _until_js(browser, "(() => { const m = document.getElementById('validation-message');"
                                 " return m && m.innerText.includes('points') ? m.innerText : ''; })()",
                        "the Validate dialog's results", 600)
    assert "FAIL  test_masks" in message and "NotImplementedError" in message and "Traceback" not in message, message[:1500]
    screenshot(browser, "hub-validate")
    browser.execute_script("document.querySelector('.jp-Dialog .jp-mod-accept').click()")
    browser.execute_script(f"{button.format(list='fetched_assignments_list', text='Submit')}.click()")
    _until_js(browser, f"[...document.querySelectorAll('#submitted_assignments_list .list_item')]"
                       f".some(e => e.textContent.includes('{A_ID}'))", "04_masking among D's submitted assignments", 120)
    screenshot(browser, "hub-submitted")
    inbound = klass["exchange"] / COURSE / "inbound"
    mine = [p for p in inbound.iterdir() if p.name.startswith(f"{d}+{A_ID}+")]
    assert len(mine) == 1 and mine[0].stat().st_uid == pwd.getpwnam(d).pw_uid, mine
    assert (mine[0] / f"{A_ID}.ipynb").is_file()


def test_hub_config_for_a_roster(tmp_path):
    """hub/jupyterhub_config.py's settings: PAM, the roster's users and groups, loopback, the role's settings."""
    from traitlets.config import Config

    from course_tools.hub import HubSettings, RosterError, configure, read_roster, server_environment

    roster = tmp_path / "roster.csv"
    roster.write_text("username,role\nprof,instructor\nann,student\nben,Student\n")
    settings = HubSettings(roster, tmp_path / "state", tmp_path / "exchange", tmp_path / "course")
    c = Config()
    configure(c, settings.environment())
    assert c.JupyterHub.authenticator_class == "pam" and c.JupyterHub.spawner_class == "localprocess"
    assert c.JupyterHub.bind_url == "http://127.0.0.1:8000" and c.JupyterHub.hub_ip == "127.0.0.1"
    assert c.Authenticator.allowed_users == {"prof", "ann", "ben"} and "admin_users" not in c.Authenticator
    assert c.JupyterHub.load_groups == {"instructors": {"users": ["prof"]}, "students": {"users": ["ann", "ben"]}}
    student = server_environment(settings, "student")["JUPYTER_CONFIG_PATH"].split(os.pathsep)
    instructor = server_environment(settings, "instructor")["JUPYTER_CONFIG_PATH"].split(os.pathsep)
    assert student[0].endswith("labconfig/student") and not any(p.endswith("labconfig/student") for p in instructor)
    assert server_environment(settings, "student")["COURSE_EXCHANGE"] == str(tmp_path / "exchange")
    roster.write_text("username,role\nann,student\n")
    with pytest.raises(RosterError, match="no instructor"):
        read_roster(roster)
    roster.write_text("username,role\nprof,instructor\na+b,student\n")
    with pytest.raises(RosterError, match="may not hold"):
        read_roster(roster)
