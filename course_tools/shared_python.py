"""Run this environment's packages as another Unix user (a student's server, an exchange test).

A virtual environment made from an interpreter under a private folder (pyenv in /root, say)
cannot be started by other users. Then the system's Python of the same minor version serves
instead: isolated (`-I -S`: no user site, no distribution packages) with this environment's
site-packages added, so every user runs the same packages and this checkout's editable install.
"""

from __future__ import annotations

import os
import shutil
import stat
import sys
import sysconfig
from importlib.metadata import entry_points
from pathlib import Path


def world_runnable(path: str | os.PathLike) -> bool:
    """True when any user can reach and run PATH (every folder above it searchable by others)."""
    real = Path(os.path.realpath(path))
    if not real.exists() or not real.stat().st_mode & stat.S_IXOTH:
        return False
    return all(parent.stat().st_mode & stat.S_IXOTH for parent in real.parents)


def site_packages() -> str:
    """This environment's site-packages folder."""
    return sysconfig.get_paths()["purelib"]


def _system_python() -> str | None:
    """The system's Python of this minor version when this environment's cannot be run by others."""
    if world_runnable(sys.executable):
        return None
    system = shutil.which(f"python{sys.version_info.major}.{sys.version_info.minor}", path="/usr/bin:/usr/local/bin")
    if system is None or not world_runnable(system):
        raise RuntimeError(f"{sys.executable} cannot be run by other users and there is no system "
                           f"python{sys.version_info.major}.{sys.version_info.minor}")
    return system


def _boot() -> str:
    return f"import site; site.addsitedir({site_packages()!r}); del site\n"


def python_c(code: str) -> list[str]:
    """The argv that runs CODE (as `python -c`) in this environment, for any user."""
    system = _system_python()
    return [sys.executable, "-c", code] if system is None else [system, "-I", "-S", "-c", _boot() + code]


def console_script(name: str) -> str:
    """The `module:function` of console script NAME in this environment."""
    [entry] = [e for e in entry_points(group="console_scripts") if e.name == name]
    return entry.value


def script_code(name: str) -> str:
    """Python code that behaves as console script NAME (with sys.argv as given)."""
    module, _, func = console_script(name).partition(":")
    return f"import sys; from {module} import {func.split('.')[0]} as _main; sys.argv[0] = {name!r}; sys.exit(_main())"


def command(name: str, *args: str) -> list[str]:
    """The argv that runs console script NAME with ARGS for any user."""
    if _system_python() is None:
        return [str(Path(sys.executable).with_name(name)), *args]
    return [*python_c(script_code(name)), *args]


def write_scripts(bindir: str | os.PathLike, names: list[str]) -> Path:
    """Write runnable copies of console scripts NAMES into BINDIR (0755, for PATH); return BINDIR."""
    bindir = Path(bindir)
    bindir.mkdir(parents=True, exist_ok=True)
    system = _system_python()
    for name in names:
        head = f"#!{sys.executable}\n" if system is None else f"#!{system} -IS\n{_boot()}"
        path = bindir / name
        path.write_text(head + script_code(name) + "\n")
        path.chmod(0o755)
    return bindir
