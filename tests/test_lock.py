"""The lock files (issue 38): lock/lab.txt (`make lab`) and lock/all.txt (`make test`, `make hub`, the
course image) pin every transitive package with its hashes, agree with pyproject.toml and with each other,
and are what is installed. tools/lock.sh writes them; a pin changed in pyproject.toml without rerunning it
fails here."""

from __future__ import annotations

import re
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
ENTRY = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9_.-]*)==(?P<version>\S+)(?P<rest>(?:[ \t]*\\\n[ \t]+--hash=\S+)*)",
                   re.M)


def parse(path: Path) -> dict[str, tuple[Version, list[str]]]:
    """name -> (version, hashes), for every pinned entry; fails on any line that installs something else."""
    text = path.read_text()
    pins = {}
    for m in ENTRY.finditer(text):
        hashes = re.findall(r"--hash=(\S+)", m.group("rest"))
        pins[canonicalize_name(m.group("name"))] = (Version(m.group("version")), hashes)
    requirements = [line for line in text.splitlines()
                    if line.strip() and not line.startswith((" ", "#")) and not line.startswith("\t")]
    assert len(requirements) == len(pins), \
        f"{path.name}: lines that are not `name==version` entries: {[r for r in requirements if '==' not in r]}"
    return pins


@pytest.fixture(scope="module")
def locks():
    return {name: parse(ROOT / "lock" / f"{name}.txt") for name in ("lab", "all")}


def _requirements(extras: bool) -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = [Requirement(r) for r in project["dependencies"]]
    if extras:
        reqs += [Requirement(r) for group in project["optional-dependencies"].values() for r in group]
    return [r for r in reqs if canonicalize_name(r.name) != canonicalize_name(project["name"])]


def test_every_entry_is_pinned_with_sha256_hashes(locks):
    for name, pins in locks.items():
        assert len(pins) > 100, f"{name}: {len(pins)} entries, too few for the course's environment"
        bad = [p for p, (_, hashes) in pins.items() if not hashes or not all(h.startswith("sha256:") for h in hashes)]
        assert not bad, f"lock/{name}.txt: entries without sha256 hashes: {bad}"
        text = (ROOT / "lock" / f"{name}.txt").read_text()
        assert not re.search(r"(?m)^(-e|--editable|\S+ @ )", text), f"lock/{name}.txt installs from a path or URL"


@pytest.mark.parametrize("name, extras", [("lab", False), ("all", True)])
def test_the_lock_satisfies_pyproject(locks, name, extras):
    """Each of pyproject.toml's requirements (the student's for lab, every extra's for all) is locked at a
    version its specifier admits: an exact pin in pyproject is the lock's version."""
    pins = locks[name]
    wrong = []
    for req in _requirements(extras):
        locked = pins.get(canonicalize_name(req.name))
        if locked is None or not req.specifier.contains(locked[0], prereleases=True):
            wrong.append(f"{req} (lock: {locked[0] if locked else 'missing'})")
    assert not wrong, f"lock/{name}.txt disagrees with pyproject.toml (run tools/lock.sh): {wrong}"


def test_torch_is_the_cpu_build(locks):
    """torch==2.13.0 in pyproject is locked to its CPU build: an unpinned or CUDA torch is several GB."""
    for pins in locks.values():
        version, _ = pins["torch"]
        assert version.public == "2.13.0" and version.local == "cpu"
        assert not any(p.startswith("nvidia-") for p in pins), "a CUDA package in the lock"


def test_lab_lock_is_within_all(locks):
    """The student's lock is a subset of the full one at the same versions and hashes: one environment."""
    lab, full = locks["lab"], locks["all"]
    assert not set(lab) - set(full), f"in lab.txt only: {sorted(set(lab) - set(full))}"
    differ = {p: (str(lab[p][0]), str(full[p][0])) for p in lab if lab[p][0] != full[p][0]}
    assert not differ, f"lab.txt and all.txt pin different versions: {differ}"
    assert all(set(lab[p][1]) == set(full[p][1]) for p in lab)


def test_the_installed_environment_is_the_lock(locks):
    """This environment (make test installs lock/all.txt) has every locked package at its locked version,
    and each one's own requirements are in the lock: it is closed, nothing resolved beside it."""
    pins = locks["all"]
    wrong, open_ = [], []
    for name, (version, _) in pins.items():
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            wrong.append(f"{name} not installed")
            continue
        if Version(dist.version) != version:
            wrong.append(f"{name} {dist.version} installed, {version} locked")
        for line in dist.requires or []:
            req = Requirement(line)
            if req.marker is not None and not req.marker.evaluate({"extra": ""}):
                continue
            if canonicalize_name(req.name) not in pins:
                open_.append(f"{name} needs {req}")
    assert not wrong, f"the installed environment is not lock/all.txt: {wrong}"
    assert not open_, f"lock/all.txt is not closed: {open_}"


def test_make_and_the_image_install_from_the_locks():
    """make lab installs lock/lab.txt, make test lock/all.txt, both with --require-hashes; so does the image."""
    make = (ROOT / "Makefile").read_text()
    assert "--require-hashes -r $(1)" in make
    assert "$(call install_from,lock/lab.txt)" in make and "$(call install_from,lock/all.txt)" in make
    assert re.search(r"^\$\(STAMP\): pyproject\.toml lock/lab\.txt", make, re.M), "a new lock reinstalls"
    assert "--require-hashes" in (ROOT / "hub" / "k8s" / "Dockerfile").read_text()
