"""Start a grading kernel inside a sandbox.

Used as a Jupyter kernel command (see ``write_kernelspec``):

    python -m course_tools.sandbox --workdir DIR --home DIR --memory-gb N -f {connection_file}

The kernel always gets a minimal, explicit environment (``kernel_env``: no variable of the
grader's shell reaches it), a HOME and a TMPDIR of its own, an address-space cap and no core
dumps. With bubblewrap (Debian package ``bubblewrap``) it also sees a read-only system, this
Python environment and course_utils, a private /tmp (its HOME lives there), an /etc reduced to
what programs need to start (``ETC_ALLOWED``: no /etc/shadow, no sudoers, no keys; passwd and
group list only root and nobody), and one writable working folder, a size-capped tmpfs holding the
release's extra files (``WORKDIR_BYTES``; /tmp is capped too). It
has no network (its own network namespace; the kernel talks to the grader over Unix sockets in
a runtime folder shared with it) and cannot see solutions/, the gradebook, other students,
/root or /home. Without bubblewrap the kernel still runs with the environment, HOME and memory
cap, and the grade report says it was not sandboxed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import shutil
import sys
from pathlib import Path

KERNEL_NAME = "course-sandbox"

# What of the grader's environment reaches a kernel: these course settings, nothing else.
PASSED_THROUGH = ("COURSE_CACHE", "COURSE_DEVICE")

# The /etc entries a sandboxed kernel sees (read-only); everything else in /etc is absent.
ETC_ALLOWED = ("ld.so.cache", "ld.so.conf", "ld.so.conf.d", "alternatives", "fonts", "localtime",
               "timezone", "hosts", "host.conf", "nsswitch.conf", "gai.conf", "mime.types",
               "ssl/certs", "ca-certificates", "os-release", "debian_version", "matplotlibrc")

SANDBOX_HOME = "/tmp/home"
TMP_BYTES = 512 * 2**20  # the sandbox's /tmp (HOME included)
WORKDIR_BYTES = 1 * 2**30  # its working folder
RUNTIME_BYTES = 1 * 2**20  # its runtime folder: the kernel's sockets (no data) and the hidden tests' one-shot files
INSIDE = "inside"  # in the grader's runtime folder: a link to the same folder as the sandbox sees it
FILE_BYTES = 2 * 2**30  # the largest file a kernel may write (RLIMIT_FSIZE), sandboxed or not
PASSWD = "root:x:0:0:root:/tmp/home:/usr/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"
GROUP = "root:x:0:\nnogroup:x:65534:\n"


def bwrap_path() -> str | None:
    """Return the bubblewrap executable when it is installed and works here, else None."""
    path = shutil.which("bwrap")
    if path is None or os.environ.get("COURSE_NO_SANDBOX"):
        return None
    import subprocess

    probe = subprocess.run([path, "--unshare-all", "--die-with-parent", "--ro-bind", "/", "/", "true"],
                           capture_output=True)
    return path if probe.returncode == 0 else None


NO_SANDBOX = ("no working sandbox: install bubblewrap (sudo apt-get install bubblewrap), or grade "
              "without one with --no-sandbox (student code then runs as you and can read what you can)")


def isolation() -> str:
    """Describe the isolation this machine offers, for the grade report."""
    return "bubblewrap sandbox" if bwrap_path() else "not sandboxed (install bubblewrap)"


def kernel_env(home: str, tmp: str, source: dict | None = None) -> dict[str, str]:
    """The whole environment of a grading kernel: fixed values plus ``PASSED_THROUGH`` from ``source``."""
    source = os.environ if source is None else source
    bindir = str(Path(sys.executable).parent)
    env = {
        "PATH": os.pathsep.join([bindir, "/usr/local/bin", "/usr/bin", "/bin"]),
        "HOME": home, "TMPDIR": tmp, "MPLCONFIGDIR": os.path.join(home, ".matplotlib"),
        "LANG": "C.UTF-8", "PYTHONUNBUFFERED": "1", "PYTHONDONTWRITEBYTECODE": "1",
        "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "MPLBACKEND": "Agg",
        "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
        "COURSE_GRADING": "1",
    }
    env.update({name: source[name] for name in PASSED_THROUGH if source.get(name)})
    return env


def _system_mounts() -> list[str]:
    """bubblewrap arguments for the read-only system: merged-/usr links stay links."""
    args: list[str] = []
    for path in ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/opt", "/sys"):
        if os.path.islink(path):
            args += ["--symlink", os.readlink(path), path]
        elif os.path.exists(path):
            args += ["--ro-bind", path, path]
    args += ["--tmpfs", "/etc"]
    for name in ETC_ALLOWED:
        path = os.path.join("/etc", name)
        if os.path.islink(path):
            args += ["--symlink", os.readlink(path), path]
        elif os.path.exists(path):
            args += ["--ro-bind", path, path]
    return args


DEVICES = ("null", "zero", "full", "random", "urandom")


def _dev_mounts() -> list[str]:
    """bubblewrap arguments for a minimal /dev: the harmless devices, the fd links, and /dev/shm
    pointing into the capped /tmp (bubblewrap's --dev would give an uncapped tmpfs there)."""
    args = ["--tmpfs", "/dev"]
    for name in DEVICES:
        if os.path.exists(f"/dev/{name}"):
            args += ["--dev-bind", f"/dev/{name}", f"/dev/{name}"]
    for name, target in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"), ("stdout", "/proc/self/fd/1"),
                         ("stderr", "/proc/self/fd/2"), ("shm", "/tmp/shm")):
        args += ["--symlink", target, f"/dev/{name}"]
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
    for name, text in (("passwd", PASSWD), ("group", GROUP)):
        (runtime / name).write_text(text)
    cmd = [bwrap, "--unshare-all", "--die-with-parent", "--new-session", "--clearenv",
           "--proc", "/proc", *_dev_mounts(), *_system_mounts(),
           "--ro-bind", str(runtime / "passwd"), "/etc/passwd", "--ro-bind", str(runtime / "group"), "/etc/group",
           "--size", str(TMP_BYTES), "--tmpfs", "/tmp", "--dir", SANDBOX_HOME, "--dir", "/tmp/shm"]
    for root in _readable_roots():
        cmd += ["--ro-bind", root, root]
    # the working folder is a size-capped tmpfs holding the release's extra files: a submission that
    # writes gigabytes fills its own folder, never the grader's disk, and nothing outlives the kernel
    # the kernel binds its sockets in the runtime folder, so the sandbox's runtime folder is writable: a
    # tmpfs of its own, capped (``RUNTIME_BYTES``), never the grader's folder (``expose_runtime`` links the
    # sockets back). What the grader put there (the connection file, the probe a fresh kernel runs after a
    # crash) is bound in read-only: a submission cannot swap the probe before it makes the kernel die
    cmd += ["--size", str(RUNTIME_BYTES), "--tmpfs", str(runtime)]
    for name in sorted(os.listdir(runtime)):
        path = os.path.join(runtime, name)
        if os.path.isfile(path) and not os.path.islink(path):
            cmd += ["--ro-bind", path, path]
    cmd += ["--size", str(WORKDIR_BYTES), "--tmpfs", str(workdir)]
    for here, _dirs, files in os.walk(workdir):
        for name in sorted(files):
            path = os.path.join(here, name)
            cmd += ["--ro-bind", path, path]  # read-only: writes go to the capped folder, never our disk
    # nothing else is writable: the root and /dev become read-only once every mount is in place
    # (bubblewrap's own --dev would give a RAM-backed /dev/shm of no size limit: /dev/shm is /tmp/shm)
    cmd += ["--remount-ro", "/dev", "--remount-ro", "/", "--chdir", str(workdir)]
    for name, value in kernel_env(SANDBOX_HOME, "/tmp").items():
        cmd += ["--setenv", name, value]
    return cmd + ["--setenv", "COURSE_SANDBOXED", "1", "--"] + kernel_argv


def write_kernelspec(jupyter_dir: Path, workdir: Path, home: Path, memory_gb: float,
                     probe: Path | None = None, sandbox: bool = True) -> str:
    """Write the sandbox kernelspec under ``jupyter_dir/kernels`` and return its name.

    ``probe``: a file the kernel runs at start-up (the grader's probe), in the kernel's runtime
    folder, which the sandbox shares with it. ``sandbox``: the kernel must run in bubblewrap (it refuses to
    start without it); False only when the instructor said ``--no-sandbox``."""
    spec = jupyter_dir / "kernels" / KERNEL_NAME
    spec.mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, "-m", "course_tools.sandbox", "--workdir", str(workdir), "--home", str(home),
            "--memory-gb", str(memory_gb), *(["--probe", str(probe)] if probe else []),
            "--sandbox", "required" if sandbox else "off", "-f", "{connection_file}"]
    (spec / "kernel.json").write_text(json.dumps(
        # interrupts travel as messages: a signal to our process group cannot reach a kernel
        # that bubblewrap started in a session of its own
        {"argv": argv, "display_name": "Python 3 (grading sandbox)", "language": "python",
         "interrupt_mode": "message"}))
    return KERNEL_NAME


def main(argv: list[str] | None = None) -> None:
    """Cap memory, then replace this process with the (sandboxed) kernel, in a clean environment."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--home", required=True, help="HOME and TMPDIR when not sandboxed")
    parser.add_argument("--memory-gb", type=float, default=4.0)
    parser.add_argument("--probe", help="a file the kernel runs at start-up (IPKernelApp.exec_files)")
    parser.add_argument("--sandbox", choices=("required", "off"), default="required",
                        help="required: refuse to start without bubblewrap; off: the instructor's --no-sandbox")
    parser.add_argument("-f", dest="connection_file", required=True)
    args = parser.parse_args(argv)
    limit = int(args.memory_gb * 2**30)
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_FSIZE, (FILE_BYTES, FILE_BYTES))
    workdir = Path(args.workdir).resolve()
    connection = Path(args.connection_file).resolve()
    kernel = [sys.executable, "-m", "ipykernel_launcher", "-f", str(connection),
              "--HistoryManager.hist_file=:memory:"]
    if args.probe:
        kernel.append(f"--IPKernelApp.exec_files={Path(args.probe).resolve()}")
    bwrap = bwrap_path() if args.sandbox == "required" else None
    if args.sandbox == "required" and not bwrap:
        sys.exit(f"course sandbox: {NO_SANDBOX}")
    if bwrap:
        command, env = bwrap_command(bwrap, workdir, connection.parent, kernel), {}
    else:
        home = Path(args.home).resolve()
        (home / "tmp").mkdir(parents=True, exist_ok=True)
        command, env = kernel, kernel_env(str(home), str(home / "tmp"))
        env["JPY_PARENT_PID"] = str(os.getppid())  # ipykernel exits when the grader's process does
    os.chdir(workdir)
    # the kernel's own stdout holds only ipykernel's connection banner: keep it out of the grader's log
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    if bwrap:
        # bubblewrap's --die-with-parent covers the sandbox's own processes, not bubblewrap itself:
        # without this, a grading worker that is killed leaves its kernel running (seen in the fault tests)
        # jupyter_client names the process that launched the kernel; it may have died already
        die_with_parent(int(os.environ.get("JPY_PARENT_PID") or os.getppid()))
        bwrap_pid = os.getpid()
        if os.fork() == 0:  # links the grader's runtime folder to the sandbox's, then exits
            try:
                os.dup2(devnull, 0)
                os.dup2(devnull, 2)
                expose_runtime(bwrap_pid, connection)
            finally:
                os._exit(0)
    os.execve(command[0], command, env)


def _children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except (OSError, ValueError):
        return []


def expose_runtime(bwrap: int, connection: Path, timeout: float = 60.0) -> None:
    """Link the grader's runtime folder to the sandbox's (run in a process of its own, beside ``bwrap``).

    The sandbox's runtime folder is a tmpfs of its own (``bwrap_command``), so the sockets the kernel
    binds there exist only inside it. Once bubblewrap's child (the sandbox) exists, each socket path of
    ``connection`` (``ip-port``) becomes, in the grader's folder, a link to the same path under
    ``/proc/<child>/root``, and ``INSIDE`` a link to the whole folder as the sandbox sees it (where the
    grader puts a hidden test's one-shot file). The grader connects through the links; ZeroMQ retries
    until the kernel has bound. Links already there (from a kernel before a restart) are replaced."""
    import time

    info = json.loads(connection.read_text())
    runtime = connection.parent
    own = os.readlink("/proc/self/ns/mnt")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and os.path.exists(f"/proc/{bwrap}"):
        for child in _children(bwrap):
            if child == os.getpid():
                continue
            try:
                if os.readlink(f"/proc/{child}/ns/mnt") == own:
                    continue  # not yet in its own mount namespace
            except OSError:
                continue
            root = f"/proc/{child}/root"
            links = {runtime / INSIDE: root + str(runtime)}
            if info.get("transport") == "ipc":
                for key in ("shell_port", "iopub_port", "stdin_port", "control_port", "hb_port"):
                    path = f"{info['ip']}-{info[key]}"
                    links[Path(path)] = root + path
            for path, target in links.items():  # the folder first: a kernel reached is a kernel whose folder is linked
                staged = path.with_name(f".{path.name}.{os.getpid()}")
                with contextlib.suppress(FileNotFoundError):
                    staged.unlink()
                os.symlink(target, staged)
                os.replace(staged, path)
            return
        time.sleep(0.005)


def inside_runtime(runtime: Path) -> Path:
    """Where the grader writes a file the kernel reads from ``runtime``: the sandbox's own runtime folder
    when the kernel is sandboxed (``INSIDE``), else ``runtime`` itself."""
    link = runtime / INSIDE
    return link if link.is_symlink() else runtime


def die_with_parent(parent: int | None = None) -> None:
    """Be killed (SIGKILL, kept across exec) when ``parent`` (default: this process's parent) dies (Linux).

    If ``parent`` has died already, before the call could take effect, exit now."""
    import ctypes
    import signal

    parent = os.getppid() if parent is None else parent
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # the parent died before the call: follow it now
        os._exit(1)


if __name__ == "__main__":
    main()
