"""Start a grading kernel inside a sandbox.

Used as a Jupyter kernel command (see ``write_kernelspec``):

    python -m course_utils.sandbox --workdir DIR --memory-gb N -f {connection_file}

With bubblewrap (Debian package ``bubblewrap``) the kernel sees a read-only system, this
Python environment and course_utils, a private /tmp, and one writable folder: the
submission's scratch folder. It has no network (its own network namespace; the kernel talks
to the grader over Unix sockets in a runtime folder shared with it), cannot see solutions/,
the gradebook or other students, and its address space is capped. Without bubblewrap the
kernel still runs, with the memory cap, and the grade report says it was not sandboxed.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sys
from pathlib import Path

KERNEL_NAME = "course-sandbox"


def bwrap_path() -> str | None:
    """Return the bubblewrap executable when it is installed and works here, else None."""
    path = shutil.which("bwrap")
    if path is None or os.environ.get("COURSE_NO_SANDBOX"):
        return None
    import subprocess

    probe = subprocess.run([path, "--unshare-all", "--die-with-parent", "--ro-bind", "/", "/", "true"],
                           capture_output=True)
    return path if probe.returncode == 0 else None


def isolation() -> str:
    """Describe the isolation this machine offers, for the grade report."""
    return "bubblewrap sandbox" if bwrap_path() else "not sandboxed (install bubblewrap)"


def _system_mounts() -> list[str]:
    """bubblewrap arguments for the read-only system: merged-/usr links stay links."""
    args: list[str] = []
    for path in ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/etc", "/opt", "/sys"):
        if os.path.islink(path):
            args += ["--symlink", os.readlink(path), path]
        elif os.path.exists(path):
            args += ["--ro-bind", path, path]
    return args


def _readable_roots() -> list[str]:
    """Folders outside the system the kernel must read: this Python and course_utils."""
    import course_utils

    roots = [sys.prefix, sys.base_prefix, sys.exec_prefix, str(Path(course_utils.__file__).parent)]
    cache = os.environ.get("COURSE_CACHE")
    if cache:
        roots.append(cache)
    out: list[str] = []
    for root in roots:
        for path in (os.path.abspath(root), os.path.realpath(root)):
            if os.path.exists(path) and path not in out and not path.startswith(("/usr/", "/etc/", "/opt/")):
                out.append(path)
    return out


def bwrap_command(bwrap: str, workdir: Path, runtime: Path, kernel_argv: list[str]) -> list[str]:
    """Return the bubblewrap command line that runs ``kernel_argv`` in the sandbox."""
    cmd = [bwrap, "--unshare-all", "--die-with-parent", "--new-session",
           "--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp", *_system_mounts()]
    for root in _readable_roots():
        cmd += ["--ro-bind", root, root]
    cmd += ["--bind", str(runtime), str(runtime), "--bind", str(workdir), str(workdir),
            "--chdir", str(workdir), "--setenv", "HOME", "/tmp", "--setenv", "MPLCONFIGDIR", "/tmp",
            "--setenv", "COURSE_SANDBOXED", "1",
            # the grader's PID means nothing in the new PID namespace: ipykernel would exit
            "--unsetenv", "JPY_PARENT_PID", "--"]
    return cmd + kernel_argv


def write_kernelspec(jupyter_dir: Path, workdir: Path, memory_gb: float) -> str:
    """Write the sandbox kernelspec under ``jupyter_dir/kernels`` and return its name."""
    spec = jupyter_dir / "kernels" / KERNEL_NAME
    spec.mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, "-m", "course_utils.sandbox", "--workdir", str(workdir),
            "--memory-gb", str(memory_gb), "-f", "{connection_file}"]
    (spec / "kernel.json").write_text(json.dumps(
        # interrupts travel as messages: a signal to our process group cannot reach a kernel
        # that bubblewrap started in a session of its own
        {"argv": argv, "display_name": "Python 3 (grading sandbox)", "language": "python",
         "interrupt_mode": "message"}))
    return KERNEL_NAME


def main(argv: list[str] | None = None) -> None:
    """Cap memory, then replace this process with the (sandboxed) kernel."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--memory-gb", type=float, default=4.0)
    parser.add_argument("-f", dest="connection_file", required=True)
    args = parser.parse_args(argv)
    limit = int(args.memory_gb * 2**30)
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    workdir = Path(args.workdir).resolve()
    connection = Path(args.connection_file).resolve()
    kernel = [sys.executable, "-m", "ipykernel_launcher", "-f", str(connection),
              "--HistoryManager.hist_file=:memory:"]
    bwrap = bwrap_path()
    command = bwrap_command(bwrap, workdir, connection.parent, kernel) if bwrap else kernel
    os.chdir(workdir)
    os.environ.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", MPLBACKEND="Agg")
    os.execv(command[0], command)


if __name__ == "__main__":
    main()
