"""Benchmark: grade N correct submissions of an assignment with --jobs 1 and --jobs 2.

    .venv/bin/python benchmarks/grading_throughput.py [--assignment 03_attention] [--n 8]

Prints seconds per submission, throughput and the parallel speed-up. Not a test: the figures
depend on the machine, so nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import nbformat

from course_tools.build import repo_root
from course_tools.grading import Settings, grade, make_template, solved_release


def main() -> None:
    """Run the benchmark and print its table."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--assignment", default="03_attention")
    parser.add_argument("--n", type=int, default=8)
    parser.add_argument("--jobs", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    root = repo_root()
    with tempfile.TemporaryDirectory(prefix="grade-bench-") as tmp:
        tmp = Path(tmp)
        template = make_template(root, args.assignment, tmp / "probe")
        solved = solved_release(template)
        for i in range(args.n):
            folder = tmp / "submitted" / f"student{i:02d}" / args.assignment
            folder.mkdir(parents=True)
            nbformat.write(solved, folder / f"{args.assignment}.ipynb")
        print(f"{args.n} correct submissions of {args.assignment} on {os.cpu_count()} cores")
        print(f"{'jobs':>4}  {'wall s':>7}  {'s/submission':>12}  {'per minute':>10}  {'speed-up':>8}  scores")
        baseline = None
        for jobs in args.jobs:
            start = time.perf_counter()
            rows = grade(root, tmp / "submitted", args.assignment, out=tmp / f"out{jobs}", jobs=jobs,
                         settings=Settings(notebook_timeout=900))
            wall = time.perf_counter() - start
            baseline = baseline or wall
            scores = sorted({f"{r.score:g}/{r.max_score:g}" for r in rows})
            print(f"{jobs:>4}  {wall:>7.1f}  {wall / len(rows):>12.1f}  {60 * len(rows) / wall:>10.2f}  "
                  f"{baseline / wall:>7.2f}x  {json.dumps(scores)}", flush=True)


if __name__ == "__main__":
    main()
