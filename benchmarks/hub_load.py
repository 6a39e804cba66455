"""Benchmark: N students fetching and submitting at once through the course hub.

    sudo .venv/bin/python benchmarks/hub_load.py [--students 30]

As root, on 127.0.0.1 only: creates an instructor and N students as temporary Unix users (removed
at the end), starts `course hub` for them, releases 04_masking, starts every student's server
(not timed), then all N students fetch at once, then all submit at once, each through the hub's
proxy to their own server's nbgrader endpoint. Prints p50/p95/max seconds per fetch and per
submit, then collects and checks that every submission was collected exactly once. Not a test:
the figures depend on the machine, so nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from test_exchange import Users, as_user, class_staff  # noqa: E402
from test_hub import A_ID, COURSE, _wait, course_copy, start_hub, stop_hub  # noqa: E402


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--students", type=int, default=30)
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("run as root (it creates Unix users)", file=sys.stderr)
        return 2
    users = Users()
    base = Path(tempfile.mkdtemp(prefix="cx-load-"))
    hub = None
    try:
        teachers, inst = class_staff(users, base)
        students = [users.add(f"s{i:02d}") for i in range(args.students)]
        course = course_copy(base, inst, teachers)
        exchange = base / "exchange"
        hub, url, token = start_hub(base, inst, students, course, exchange)
        admin = requests.Session()
        admin.headers["Authorization"] = f"token {token}"
        _wait(lambda: requests.get(f"{url}/hub/api", timeout=5).ok if _alive(url) else hub.poll() is not None,
              "the hub")
        as_user(inst, "env", f"COURSE_EXCHANGE={exchange}", "nbgrader", "release_assignment", A_ID, cwd=course)
        sessions = {}
        start = time.perf_counter()
        for s in students:
            sessions[s] = requests.Session()
            sessions[s].headers["Authorization"] = "token " + admin.post(
                f"{url}/hub/api/users/{s}/tokens", json={"note": "load"}).json()["token"]
            admin.post(f"{url}/hub/api/users/{s}/server")
        for s in students:
            _wait(lambda: admin.get(f"{url}/hub/api/users/{s}").json().get("servers", {}).get("", {}).get("ready"),
                  f"{s}'s server", limit=600)
        print(f"{len(students)} servers started in {time.perf_counter() - start:.0f} s (not part of the figures)")

        def act(student: str, action: str) -> float:
            t0 = time.perf_counter()
            reply = sessions[student].post(f"{url}/user/{student}/assignments/{action}",
                                           params={"course_id": COURSE, "assignment_id": A_ID}, timeout=600)
            assert reply.ok and reply.json().get("success"), (student, action, reply.text[:300])
            return time.perf_counter() - t0

        for action in ("fetch", "submit"):
            with ThreadPoolExecutor(len(students)) as pool:
                times = list(pool.map(lambda s: act(s, action), students))
            print(f"{action:6s} x{len(times)} at once: p50 {statistics.median(times):.2f} s, "
                  f"p95 {percentile(times, 0.95):.2f} s, max {max(times):.2f} s")
        collected = as_user(inst, "env", f"COURSE_EXCHANGE={exchange}", "nbgrader", "collect", A_ID, cwd=course,
                            check=False)
        folders = sorted(p.name for p in (course / "grading" / "submitted").iterdir())
        inbound = [p.name.split("+")[0] for p in (exchange / COURSE / "inbound").iterdir()]
        once = folders == sorted(students) and sorted(inbound) == sorted(students)
        print(f"collect exit {collected.returncode}: {len(folders)} collected of {len(students)} submitted; "
              f"every submission collected exactly once: {'yes' if once else 'NO'}")
        return 0 if once and collected.returncode == 0 else 1
    finally:
        if hub is not None:
            stop_hub(hub, url, token, users.names)
        users.remove()
        shutil.rmtree(base, ignore_errors=True)


def _alive(url: str) -> bool:
    try:
        requests.get(f"{url}/hub/api", timeout=5)
        return True
    except requests.ConnectionError:
        return False


if __name__ == "__main__":
    sys.exit(main())
