"""``course lab``: JupyterLab set up for a student or for an instructor.

* students (the default, ``make lab``): the server's root is ``notebooks/``, and nbgrader's
  instructor extensions (formgrader, create assignment) are disabled, in the browser and on
  the server; the assignment list and the Validate button stay;
* instructors (``--instructor``, ``make lab-instructor``): the server's root is the
  repository, so the formgrader reads ``nbgrader_config.py`` and finds ``solutions/``.

Both use the course's exchange folder, ``exchange/`` in the repository. The settings are
added through ``JUPYTER_CONFIG_PATH``; the user's own ``~/.jupyter`` is left alone.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from course_tools.build import with_scripts_on_path

CONFIG = Path(__file__).parent / "labconfig"


def lab_environment(root: Path, instructor: bool, base: dict | None = None) -> dict[str, str]:
    """The environment ``jupyter lab`` runs with: config paths, the exchange, the course root."""
    env = dict(os.environ if base is None else base)
    paths = ([] if instructor else [str(CONFIG / "student")]) + [str(CONFIG / "common")]
    if env.get("JUPYTER_CONFIG_PATH"):
        paths.append(env["JUPYTER_CONFIG_PATH"])
    env["JUPYTER_CONFIG_PATH"] = os.pathsep.join(paths)
    env["COURSE_EXCHANGE"] = str(root / "exchange")
    return with_scripts_on_path(env)


def lab_command(root: Path, instructor: bool, extra: list[str] | None = None) -> list[str]:
    """The ``jupyter lab`` command line for students or instructors."""
    served = root if instructor else root / "notebooks"
    command = [sys.executable, "-m", "jupyterlab", f"--ServerApp.root_dir={served}",
               # Offline course: the extension manager would query PyPI.
               "--LabApp.extension_manager=readonly"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        command.append("--allow-root")  # containers and CI run as root; Jupyter refuses without it
    return command + list(extra or [])


def run_lab(root: Path, instructor: bool, extra: list[str] | None = None) -> None:
    """Replace this process with JupyterLab (Ctrl-C stops it as usual)."""
    exchange = root / "exchange"
    if not exchange.is_dir():
        exchange.mkdir()
        exchange.chmod(0o777)  # nbgrader's exchange is shared: it wants it writable by everyone
    if instructor:
        (root / "grading").mkdir(exist_ok=True)  # the formgrader's gradebook (nbgrader_config.py)
    command = lab_command(root, instructor, extra)
    print(f"JupyterLab for {'instructors' if instructor else 'students'}: serving "
          f"{command[3].split('=', 1)[1]}, exchange {root / 'exchange'}", flush=True)
    os.chdir(root)
    os.execve(sys.executable, command, lab_environment(root, instructor))
