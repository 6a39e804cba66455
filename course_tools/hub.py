"""`course hub`: the course on JupyterHub for a roster of Unix users (hub/jupyterhub_config.py).

Every student and instructor is a Unix user (LocalProcessSpawner; PAM login by default). Students
get `course lab`'s student settings (Assignment List and Validate; formgrader and create-assignment
disabled on the server and in the browser); instructors get the formgrader, their server rooted in
the instructors' course folder (nbgrader's "instructors' group" set-up for a hub). The exchange is
one folder outside any home, laid out by `course_tools.exchange.prepare_exchange`, and every
nbgrader command goes through the hardened exchange classes.

The roster is a CSV with columns `username,role` (role: student or instructor).
"""

from __future__ import annotations

import csv
import grp
import json
import os
import pwd
import sys
from dataclasses import dataclass
from pathlib import Path

from course_tools import shared_python
from course_tools.exchange import prepare_exchange

REPO = Path(__file__).resolve().parents[1]
LABCONFIG = Path(__file__).parent / "labconfig"
PROXY = REPO / "hub" / "node_modules" / ".bin" / "configurable-http-proxy"
HUB_CONFIG = REPO / "hub" / "jupyterhub_config.py"
SCRIPTS = ["jupyterhub-singleuser", "nbgrader", "alembic", "jupyter"]


class RosterError(ValueError):
    """The roster cannot be read or names no instructor."""


@dataclass(frozen=True)
class HubSettings:
    """Where the hub keeps things; passed to hub/jupyterhub_config.py through COURSE_HUB_* variables."""

    roster: Path
    state: Path
    exchange: Path
    course_dir: Path
    course_id: str = "pytorch-nlp-course"
    bind_url: str = "http://127.0.0.1:8000"

    def environment(self) -> dict[str, str]:
        return {"COURSE_HUB_ROSTER": str(self.roster), "COURSE_HUB_STATE": str(self.state),
                "COURSE_EXCHANGE": str(self.exchange), "COURSE_HUB_COURSE_DIR": str(self.course_dir),
                "COURSE_HUB_COURSE_ID": self.course_id, "COURSE_HUB_BIND": self.bind_url}

    @classmethod
    def from_environment(cls, env) -> "HubSettings":
        return cls(Path(env["COURSE_HUB_ROSTER"]), Path(env["COURSE_HUB_STATE"]), Path(env["COURSE_EXCHANGE"]),
                   Path(env["COURSE_HUB_COURSE_DIR"]), env.get("COURSE_HUB_COURSE_ID", "pytorch-nlp-course"),
                   env.get("COURSE_HUB_BIND", "http://127.0.0.1:8000"))


def read_roster(path: Path) -> dict[str, str]:
    """username -> role from the roster CSV; at least one instructor."""
    with Path(path).open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        if not reader.fieldnames or not {"username", "role"} <= set(reader.fieldnames):
            raise RosterError(f"{path}: expected the columns username,role")
        roster = {}
        for line, row in enumerate(reader, start=2):
            name, role = (row["username"] or "").strip(), (row["role"] or "").strip().lower()
            if role not in ("student", "instructor"):
                raise RosterError(f"{path}:{line}: role {role!r}: expected student or instructor")
            if not name or "+" in name or "*" in name:
                raise RosterError(f"{path}:{line}: username {name!r} (nbgrader ids may not hold + or *)")
            roster[name] = role
    if "instructor" not in roster.values():
        raise RosterError(f"{path}: no instructor")
    return roster


def _nbgrader_config(settings: HubSettings, instructor: bool) -> str:
    lines = ['"""nbgrader settings for the course hub (written by `course hub`)."""', "c = get_config()",
             f"c.CourseDirectory.course_id = {settings.course_id!r}",
             f"c.Exchange.root = {str(settings.exchange)!r}",
             'c.ExchangeFactory.submit = "course_tools.exchange.PrivateSubmit"',
             'c.ExchangeFactory.collect = "course_tools.exchange.OwnerCheckedCollect"',
             'c.ExchangeFactory.release_feedback = "course_tools.exchange.PrivateReleaseFeedback"',
             'c.ExchangeFactory.fetch_feedback = "course_tools.exchange.MathJaxFetchFeedback"']
    if instructor:
        lines.append(f"c.CourseDirectory.root = {str(settings.course_dir)!r}")
    return "\n".join(lines) + "\n"


def prepare(settings: HubSettings) -> dict[str, str]:
    """Lay out the exchange, the state folder (scripts, kernels, nbgrader settings) and the homes; run as root.

    Returns the roster. Raises RosterError for users that do not exist (create them first)."""
    roster = read_roster(settings.roster)
    missing = [name for name in roster if not _user_exists(name)]
    if missing:
        raise RosterError(f"no Unix user for: {', '.join(missing)} (create them, e.g. useradd -m NAME)")
    instructors = [name for name, role in roster.items() if role == "instructor"]
    owner = pwd.getpwnam(instructors[0])
    group = grp.getgrgid(owner.pw_gid).gr_name
    for name in roster:  # homes closed to everyone else
        home = Path(pwd.getpwnam(name).pw_dir)
        if home.is_dir():
            os.chmod(home, 0o700)
    prepare_exchange(settings.exchange, settings.course_id, instructors[0], group)
    course = settings.course_dir
    if course.is_dir():   # solutions/, the gradebook: the instructors' only
        os.chown(course, owner.pw_uid, owner.pw_gid)
        os.chmod(course, 0o770)
    state = settings.state
    state.mkdir(parents=True, exist_ok=True)
    os.chmod(state, 0o755)
    shared_python.write_scripts(state / "bin", SCRIPTS)
    kernel = state / "share" / "jupyter" / "kernels" / "python3"
    kernel.mkdir(parents=True, exist_ok=True)
    argv = shared_python.python_c("from ipykernel import kernelapp; kernelapp.launch_new_instance()")
    (kernel / "kernel.json").write_text(json.dumps({"argv": [*argv, "-f", "{connection_file}"],
                                                    "display_name": "Python 3 (course)", "language": "python"}))
    for role in ("student", "instructor"):
        folder = state / f"jupyter-{role}"
        folder.mkdir(exist_ok=True)
        (folder / "nbgrader_config.py").write_text(_nbgrader_config(settings, role == "instructor"))
    for path in [state, *state.rglob("*")]:
        if path.is_dir():
            os.chmod(path, 0o755)
    return roster


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False


def server_environment(settings: HubSettings, role: str) -> dict[str, str]:
    """The environment of a user's server: the course's Jupyter settings for ROLE, this environment's data."""
    prefix = Path(sys.prefix)
    config = ([str(LABCONFIG / "student")] if role == "student" else []) + [
        str(settings.state / f"jupyter-{role}"), str(LABCONFIG / "common"), str(prefix / "etc" / "jupyter")]
    return {"JUPYTER_CONFIG_PATH": os.pathsep.join(config),
            "JUPYTER_PATH": os.pathsep.join([str(settings.state / "share" / "jupyter"), str(prefix / "share" / "jupyter")]),
            "JUPYTERLAB_DIR": str(prefix / "share" / "jupyter" / "lab"),
            "COURSE_EXCHANGE": str(settings.exchange),
            "PATH": os.pathsep.join([str(settings.state / "bin"), "/usr/local/bin", "/usr/bin", "/bin"])}


def configure(c, env=None) -> None:
    """Fill JupyterHub's config C for the course (called by hub/jupyterhub_config.py)."""
    env = os.environ if env is None else env
    settings = HubSettings.from_environment(env)
    roster = read_roster(settings.roster)
    c.JupyterHub.bind_url = settings.bind_url
    c.JupyterHub.hub_ip = "127.0.0.1"
    c.JupyterHub.db_url = f"sqlite:///{settings.state / 'jupyterhub.sqlite'}"
    c.JupyterHub.cookie_secret_file = str(settings.state / "jupyterhub_cookie_secret")
    c.ConfigurableHTTPProxy.command = [str(PROXY)]
    c.ConfigurableHTTPProxy.pid_file = str(settings.state / "jupyterhub-proxy.pid")
    if env.get("COURSE_HUB_INTERNAL_PORTS"):  # "HUB_API,PROXY_API": for several hubs on one machine (tests)
        hub_port, proxy_port = env["COURSE_HUB_INTERNAL_PORTS"].split(",")
        c.JupyterHub.hub_bind_url = f"http://127.0.0.1:{hub_port}"
        c.ConfigurableHTTPProxy.api_url = f"http://127.0.0.1:{proxy_port}"
    c.JupyterHub.authenticator_class = env.get("COURSE_HUB_AUTHENTICATOR", "pam")
    c.Authenticator.allowed_users = set(roster)
    c.JupyterHub.load_groups = {
        "instructors": {"users": sorted(n for n, r in roster.items() if r == "instructor")},
        "students": {"users": sorted(n for n, r in roster.items() if r == "student")}}
    c.JupyterHub.spawner_class = "localprocess"
    c.Spawner.cmd = [str(settings.state / "bin" / "jupyterhub-singleuser")]
    c.Spawner.default_url = "/lab"
    c.Spawner.http_timeout = 120
    c.Spawner.start_timeout = 120

    def pre_spawn_hook(spawner):
        role = roster.get(spawner.user.name, "student")
        spawner.environment.update(server_environment(settings, role))
        spawner.notebook_dir = str(settings.course_dir) if role == "instructor" else "~"
        if role == "student":
            spawner.args = [*spawner.args, "--LabApp.extension_manager=readonly"]

    c.Spawner.pre_spawn_hook = pre_spawn_hook
    # services and tokens for tests and tools: COURSE_HUB_SERVICE_TOKEN gives a service that may make tokens
    token = env.get("COURSE_HUB_SERVICE_TOKEN")
    if token:
        c.JupyterHub.services = [{"name": "course-admin", "api_token": token}]
        c.JupyterHub.load_roles = [{"name": "course-admin", "scopes": ["admin:users", "tokens", "admin:servers",
                                                                        "access:servers"],
                                    "services": ["course-admin"]}]


def hub_command() -> list[str]:
    """The jupyterhub command line (run in the state folder)."""
    return [str(Path(sys.executable).with_name("jupyterhub")), "-f", str(HUB_CONFIG)]


def run_hub(settings: HubSettings) -> None:
    """Prepare and replace this process with JupyterHub."""
    prepare(settings)
    env = {**os.environ, **settings.environment()}
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    os.chdir(settings.state)
    print(f"course hub on {settings.bind_url}: exchange {settings.exchange}, course {settings.course_dir}", flush=True)
    os.execve(hub_command()[0], hub_command(), env)
