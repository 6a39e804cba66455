"""Benchmark: the grader's overhead per submission, and the speed-up of --jobs.

    .venv/bin/python benchmarks/grading_throughput.py [--assignment 03_attention] [--n 8] [--jobs 1 2]

Grades N correct submissions of an assignment with each --jobs value and prints, per submission:
the notebook's plain execution time (nbclient, a fresh kernel, one thread, as the grader runs it;
kernel start included), the graded time (what the grader spent on one student: reading and checking
the submission, the sandboxed run, scoring, feedback) and their difference, the grader's overhead.
Also the run's wall time (with its one-off set-up: generating the assignment), throughput and the
parallel speed-up. Not a test:
the figures depend on the machine, so nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import nbformat

from course_tools.build import repo_root
from course_tools.grading import Settings, grade, make_template, solved_release


def plain_run(template, notebook, folder: Path, threads: int = 1) -> float:
    """Seconds to execute ``notebook`` top to bottom with nbclient in a fresh kernel, as a student would."""
    from nbclient import NotebookClient

    folder.mkdir(parents=True)
    release = template.folder / "release" / template.assignment
    for extra in template.extras:
        target = folder / extra.relative_to(release)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(extra, target)
    saved = dict(os.environ)
    os.environ.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads), MPLBACKEND="Agg")
    try:
        start = time.perf_counter()
        NotebookClient(nbformat.from_dict(json.loads(json.dumps(notebook))), timeout=900, kernel_name="python3",
                       resources={"metadata": {"path": str(folder)}}).execute()
        return time.perf_counter() - start
    finally:
        os.environ.clear()
        os.environ.update(saved)


def main() -> None:
    """Run the benchmark and print its table."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--assignment", default="03_attention")
    parser.add_argument("--n", type=int, default=8)
    parser.add_argument("--jobs", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--plain-runs", type=int, default=2, help="plain executions to average (default 2)")
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
        plain = [plain_run(template, solved, tmp / f"plain{i}") for i in range(args.plain_runs)]
        notebook = sum(plain) / len(plain)
        print(f"{args.n} correct submissions of {args.assignment} on {os.cpu_count()} cores; "
              f"the notebook alone: {notebook:.1f} s (mean of {' '.join(f'{p:.1f}' for p in plain)})")
        print(f"{'jobs':>4}  {'wall s':>7}  {'graded s':>8}  {'notebook s':>10}  {'overhead s':>10}  "
              f"{'per minute':>10}  {'speed-up':>8}  scores")
        baseline = None
        for jobs in args.jobs:
            start = time.perf_counter()
            rows = grade(root, tmp / "submitted", args.assignment, out=tmp / f"out{jobs}", jobs=jobs,
                         settings=Settings(notebook_timeout=900))
            wall = time.perf_counter() - start
            baseline = baseline or wall
            graded = sum(r.seconds for r in rows) / len(rows)  # one student, start to finish
            scores = sorted({f"{r.score:g}/{r.max_score:g}" for r in rows})
            print(f"{jobs:>4}  {wall:>7.1f}  {graded:>8.1f}  {notebook:>10.1f}  {graded - notebook:>10.1f}  "
                  f"{60 * len(rows) / wall:>10.2f}  {baseline / wall:>7.2f}x  {json.dumps(scores)}", flush=True)
        print("graded s: the mean time of one student; overhead: graded - notebook (with --jobs 2 on 2 cores "
              "the notebooks themselves also run slower, sharing the cores)")


if __name__ == "__main__":
    main()
