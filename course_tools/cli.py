"""The ``course`` command: sync, build, readings, i18n, validate, mutants, grade, export, hub, slides, site, lab, doctor."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def _build(args: argparse.Namespace) -> int:
    from course_tools.build import build, repo_root

    changed = build(repo_root(), args.assignments or None, check=args.check)
    if args.check:
        if changed:
            print("stale student notebooks (run `course build`: it rewrites only notebooks/, from solutions/):")
            print("\n".join(f"  {name}" for name in changed))
            return 1
        print("notebooks/ is up to date with solutions/")
        return 0
    print("\n".join(f"wrote {name}" for name in changed) or "notebooks/ already up to date")
    return 0


def _needs(*modules: str) -> None:
    """Fail at once, before any work, when an instructor-only package is missing."""
    import importlib.util

    for module in modules:
        if importlib.util.find_spec(module) is None:
            raise ModuleNotFoundError(f"No module named {module!r}", name=module)


def _sync(args: argparse.Namespace) -> int:
    _needs("jupytext")
    from course_tools.build import build, repo_root
    from course_tools.pairing import out_of_step, sync

    root = repo_root()
    if args.check:
        problems = out_of_step(root, args.assignments or None)
        if problems:
            print("solution notebooks and their text twins are out of step (run `course sync`: the side "
                  "edited last wins, and the other is first copied to build/sync-backup/):")
            print("\n".join(f"  {line}" for line in problems))
            return 1
        print("every solution notebook is in step with its text twin in nbsource/")
        return 0
    prefer = "notebook" if args.from_notebook else "text" if args.from_text else None
    done = sync(root, args.assignments or None, prefer)
    print("\n".join(done) or "every solution notebook is already in step with its text twin")
    for name in build(root, args.assignments or None):   # writes only the student notebooks that changed
        print(f"wrote {name}")
    return 0


def _readings(args: argparse.Namespace) -> int:
    from course_tools.build import build, repo_root
    from course_tools.readings import PLACEMENT, out_of_step, write

    root = repo_root()
    if args.check:
        stale = out_of_step(root)
        if stale:
            print(f"further reading out of step with readings/ (run `course readings`): {', '.join(stale)}")
            return 1
        print(f"every notebook's further reading lists its entries of the reading list ({PLACEMENT})")
        return 0
    _needs("jupytext")
    from course_tools.pairing import sync

    written = write(root, args.assignments or None)
    if written:
        sync(root, written, prefer="notebook")     # the text twins follow the notebooks just written
        build(root, written)
    print("\n".join(f"wrote the further reading of {name}" for name in written) or "already in step")
    return 0


def _i18n(args: argparse.Namespace) -> int:
    from course_tools.build import list_assignments, repo_root
    from course_tools.i18n import catalogue_path, check, update

    root = repo_root()
    if args.action not in (None, "update"):   # `course i18n --check 04_masking`: the first id, not an action
        args.assignments, args.action = [args.action, *args.assignments], None
    unknown = sorted(set(args.assignments) - set(list_assignments(root)))
    if unknown:
        raise ValueError(f"no such assignment under solutions/: {', '.join(unknown)}")
    wanted = args.assignments or list_assignments(root)
    if args.action == "update":
        for assignment in wanted:
            cover = update(root, assignment, args.lang)
            print(f"{cover.line()}  ({catalogue_path(root, assignment, args.lang).relative_to(root)})")
        return 0
    if not args.check:
        raise ValueError("say what to do: `course i18n update` (extract and merge) or `course i18n --check`")
    covers = [check(root, assignment, args.lang) for assignment in wanted]
    print("\n".join(c.line() for c in covers))
    done = sum(c.complete for c in covers)
    print(f"{args.lang}: {done} of {len(covers)} notebooks fully translated, none fuzzy"
          if done == len(covers) else f"{args.lang}: {len(covers) - done} of {len(covers)} notebooks have fuzzy or "
          "missing cells (translate them in locale/, then `course i18n update`)")
    return 0 if done == len(covers) else 1


def _mutants(args: argparse.Namespace) -> int:
    from course_tools.build import list_assignments, repo_root
    from course_tools.mutants import mistakes_path, run_mistakes

    root = repo_root()
    wanted = list_assignments(root) if args.all else [args.assignment]
    if not args.all and not args.assignment:
        raise ValueError("name an assignment, or --all")
    failed = False
    for assignment in wanted:
        if args.all and not mistakes_path(root, assignment).is_file():
            print(f"{assignment}: no list of mistakes ({mistakes_path(root, assignment).relative_to(root)})")
            failed = True
            continue
        report = run_mistakes(root, assignment, args.only or None, timeout=args.timeout)
        print(report.table())
        if report.unexplained_hidden:
            print(f"{assignment}: {len(report.unexplained_hidden)} mistakes only a hidden test catches give no "
                  "reason: add hidden_only = \"why\" to each in its mistakes.toml")
        if report.undiagnosed:
            print(f"{assignment}: {len(report.undiagnosed)} caught mistakes teach the student nothing checked: give "
                  "each the words its visible message must hold (message = \"...\") or hidden_only = \"why\": "
                  + "; ".join(o.mistake.name for o in report.undiagnosed))
        failed |= report.score < 1.0 or bool(report.wrong_messages) or bool(report.undiagnosed)
    return 1 if failed else 0


def _validate(args: argparse.Namespace) -> int:
    import nbformat

    from course_tools.validate import (
        CellProgress,
        _root_for,
        check_assignment,
        execute,
        report,
        results,
    )

    path = Path(args.notebook)
    if not path.is_file():
        print(f"no notebook at {path}", file=sys.stderr)
        return 2
    nb = nbformat.read(path, as_version=4)
    root = _root_for(path.resolve())
    check_assignment(path, nb, root)  # another assignment's notebook: say so before running anything
    print(f"running {path} as nbgrader grades it (every cell; training cells take a while) ...", flush=True)
    items = results(execute(nb, cwd=path.parent.resolve(), timeout=args.timeout, root=root,
                            progress=CellProgress(nb)))
    lang = nb.metadata.get("language")
    print(report(items, lang if isinstance(lang, str) else None))
    return 0 if items and all(r.passed for r in items) else 1


def _grade(args: argparse.Namespace) -> int:
    from course_tools.build import repo_root
    from course_tools.grading import Settings, grade, summary
    from course_tools.sandbox import NO_SANDBOX, bwrap_path

    root = repo_root()
    settings = Settings(cell_timeout=args.cell_timeout, notebook_timeout=args.notebook_timeout,
                        memory_gb=args.memory_gb, sandbox=not args.no_sandbox)
    if settings.sandbox and not args.scheduler and bwrap_path() is None:  # safe by default: refuse
        print(f"course grade: {NO_SANDBOX}", file=sys.stderr)
        return 2
    print("isolation: " + ("bubblewrap sandbox" if settings.sandbox else
                           "NOT sandboxed (--no-sandbox): student code runs as you"), flush=True)
    rows = grade(root, Path(args.submissions), args.assignment, Path(args.out) if args.out else None,
                 args.jobs, settings, force=args.force, progress=True, trusted=set(args.trust),
                 scheduler=args.scheduler)
    print(summary(rows))
    if rows:
        out = Path(args.out) if args.out else root / "grading" / rows[0].assignment
        print(f"grades: {out / 'grades.csv'}\nfeedback: {out / 'feedback'}")
        if args.gradebook:
            from course_tools.gradebook import record_grades

            done = record_grades(root, rows[0].assignment, rows, out, Path(args.submissions).resolve())
            print(f"gradebook: {len(done.students)} student(s) recorded, {len(done.for_review)} for manual grading "
                  f"({' '.join(done.for_review) or 'none'}); feedback placed for release_feedback: {len(done.feedback)}")
            for note in done.notes:
                print(f"  {note}")
    return 1 if any(r.needs_review for r in rows) else 0


def _export(args: argparse.Namespace) -> int:
    from course_tools.build import repo_root
    from course_tools.gradebook import course_dir, db_url
    from course_tools.lms_export import ExportError, export

    root = repo_root()
    headings = {}
    for item in args.column:
        name, sep, heading = item.partition("=")
        if not sep:
            print(f"course export: --column {item!r}: expected ASSIGNMENT=HEADING", file=sys.stderr)
            return 2
        headings[name] = heading
    out = Path(args.out or f"grades-{args.format}.csv")
    try:
        text = export(db_url(course_dir(root), root), args.format, Path(args.roster), out, args.assignment or None,
                      headings)
    except (ExportError, OSError) as error:
        print(f"course export: {error}", file=sys.stderr)
        return 1
    print(f"{out}: {text.count(chr(10)) - (2 if args.format == 'canvas' else 1)} student(s), {args.format} format")
    return 0


def _hub(args: argparse.Namespace) -> int:
    from course_tools.hub import PROXY, HubSettings, RosterError, run_hub

    if os.geteuid() != 0:
        print("course hub: run it as root (each user's server runs as that Unix user)", file=sys.stderr)
        return 2
    if not PROXY.exists():
        print(f"course hub: no {PROXY}: run `make hub-deps` (npm installs configurable-http-proxy)", file=sys.stderr)
        return 2
    settings = HubSettings(Path(args.roster).resolve(), Path(args.state).resolve(), Path(args.exchange).resolve(),
                           Path(args.course_dir).resolve(), bind_url=args.bind)
    if args.extra_config:
        os.environ["COURSE_HUB_EXTRA_CONFIG"] = str(Path(args.extra_config).resolve())
    try:
        run_hub(settings)
    except RosterError as error:
        print(f"course hub: {error}", file=sys.stderr)
        return 2
    return 0


def _slides(args: argparse.Namespace) -> int:
    _needs("sphinx_revealjs", "jupyter_server_mathjax")
    from course_tools.build import list_assignments, repo_root
    from course_tools.slides import build_deck, write_index

    root = repo_root()
    if args.all == bool(args.assignment):
        print("course slides: name one ASSIGNMENT or pass --all", file=sys.stderr)
        return 2
    assignments = list_assignments(root) if args.all else [args.assignment]
    out = Path(args.out) if args.out else root / "build" / "slides" / (args.lang or "")
    for number, assignment in enumerate(assignments, 1):
        print(f"[{number}/{len(assignments)}] {assignment}: "
              f"{'running the notebook, then ' if not args.no_execute else ''}writing slides ...", flush=True)
        deck = build_deck(root, assignment, out, execute_cells=not args.no_execute, timeout=args.timeout,
                          lang=args.lang)
        print(f"  {deck.path}  ({deck.slides} slides, {deck.figures} figures, {deck.notes} speaker notes, "
              f"{deck.seconds:.0f} s)", flush=True)
    index = write_index(out)
    print(f"open {index} in a browser (works offline; copy the whole folder to present elsewhere)")
    return 0


def _site(args: argparse.Namespace) -> int:
    _needs("jupyter_book")
    from course_tools.build import repo_root
    from course_tools.site import build_site

    root = repo_root()
    out = Path(args.out) if args.out else root / "build" / ("site" if not args.lang else f"site-{args.lang}")
    notebooks = f"notebooks/{args.lang}/" if args.lang else "notebooks/"
    print(f"building the course site from {notebooks} and README.md into {out} ...", flush=True)
    index = build_site(root, out, slides=Path(args.slides) if args.slides else None, lang=args.lang)
    print(f"open {index} in a browser (static files: copy {index.parent} to any web server)")
    return 0


def _lab(args: argparse.Namespace) -> int:
    from course_tools.build import repo_root
    from course_tools.lab import run_lab

    run_lab(repo_root(), args.instructor, args.jupyter_args)
    return 0  # not reached: run_lab replaces this process


def _doctor(args: argparse.Namespace) -> int:
    import importlib.metadata as metadata

    from course_utils.data import available_datasets, gensim_data_dir
    from course_utils.runtime import describe_environment, get_device

    print("course doctor: torch, the packages, the data sets (a few seconds) ...", flush=True)
    print(describe_environment(get_device()))
    for package in ("nbgrader", "jupyterlab", "gensim", "matplotlib", "tqdm",
                    "jupytext", "jupyter-book", "sphinx-revealjs", "nbval", "selenium"):
        try:
            print(f"{package:<15} {metadata.version(package)}")
        except metadata.PackageNotFoundError:
            print(f"{package:<15} MISSING")
    import shutil

    for program in ("chromium", "chromedriver"):  # the browser tests only (tools/system-deps.sh)
        print(f"{program:<15} {shutil.which(program) or 'not found (needed by the browser tests only)'}")
    print(f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '(unset)')}  "
          f"COURSE_DEVICE={os.environ.get('COURSE_DEVICE', '(unset)')}")
    datasets = available_datasets()
    try:
        print(f"data from {gensim_data_dir()}")
    except (RuntimeError, FileNotFoundError) as error:
        print(f"data: {error}")
    for name, ok in datasets.items():
        print(f"  {'ok     ' if ok else 'MISSING'} {name}")
    return 0 if all(datasets.values()) else 1


def parser() -> argparse.ArgumentParser:
    """Return the argument parser of the ``course`` command."""
    p = argparse.ArgumentParser(prog="course", description="Build, check and grade the course.")
    sub = p.add_subparsers(dest="command", required=True)

    y = sub.add_parser("sync", help="bring solutions/*.ipynb and their text twins in nbsource/ into step, "
                                    "then rebuild the student notebooks that changed",
                       description="jupytext --sync on every pair that differs: the side edited last wins "
                                   "(or the one you name); the other side is first copied to build/sync-backup/.")
    y.add_argument("assignments", nargs="*", help="assignment ids (default: all)")
    y.add_argument("--check", action="store_true", help="only compare; exit 1 naming each pair out of step")
    side = y.add_mutually_exclusive_group()
    side.add_argument("--from-notebook", action="store_true", help="the notebook wins, whichever was edited last")
    side.add_argument("--from-text", action="store_true", help="the text twin wins, whichever was edited last")
    y.set_defaults(run=_sync)

    b = sub.add_parser("build", help="regenerate notebooks/ from solutions/ with nbgrader")
    b.add_argument("assignments", nargs="*", help="assignment ids (default: all)")
    b.add_argument("--check", action="store_true", help="only compare; exit 1 naming each stale file")
    b.set_defaults(run=_build)

    r = sub.add_parser("readings", help="write each notebook's entries of the course reading list into its further "
                                        "reading (readings/reading-list.md, placed by readings/placement.toml)")
    r.add_argument("assignments", nargs="*", help="assignment ids (default: all)")
    r.add_argument("--check", action="store_true", help="only compare; exit 1 naming the notebooks out of step")
    r.set_defaults(run=_readings)

    m = sub.add_parser("mutants", help="apply each listed plausible mistake to the solution and report which "
                                       "graded tests catch it",
                       description="Mistakes are listed in nbsource/<assignment>/mistakes.toml (see "
                                   "course_tools/mutants.py). One kernel per notebook. Exit 1 when any "
                                   "mistake passes every test.")
    m.add_argument("assignment", nargs="?", help="assignment id, e.g. 03_attention")
    m.add_argument("--all", action="store_true", help="every assignment (one without a list fails)")
    m.add_argument("--only", action="append", default=[], metavar="TEXT", help="only mistakes whose name holds TEXT")
    m.add_argument("--timeout", type=int, default=600, help="seconds per cell (default 600)")
    m.set_defaults(run=_mutants)

    t = sub.add_parser("i18n", help="translations: one gettext catalogue per notebook (locale/<lang>/<id>.po)",
                       description="`course i18n update` extracts every markdown cell of solutions/ into the "
                                   "catalogues (a changed English cell marks its translation fuzzy); "
                                   "`course i18n --check` reports translated / fuzzy / missing cells per notebook "
                                   "and exits 1 unless every cell is translated and none is fuzzy.")
    t.add_argument("action", nargs="?", metavar="update",
                   help="update: extract and merge into the catalogues (leave out with --check)")
    t.add_argument("assignments", nargs="*", help="assignment ids (default: all)")
    t.add_argument("--check", action="store_true", help="report coverage; exit 1 unless complete")
    t.add_argument("--lang", default="zh_CN", choices=["zh_CN"], help="language (default zh_CN)")
    t.set_defaults(run=_i18n)

    v = sub.add_parser("validate", help="run a notebook and report each graded test")
    v.add_argument("notebook")
    v.add_argument("--timeout", type=int, default=None,
                   help="seconds per cell (default: Execute.timeout of nbgrader_config.py, as when graded)")
    v.set_defaults(run=_validate)

    g = sub.add_parser("grade", help="autograde SUBMISSIONS/<student>/<assignment>/*.ipynb",
                       description="Exit status: 0 all graded cleanly, 1 some submission needs manual review.")
    g.add_argument("submissions")
    g.add_argument("--assignment", help="assignment id (default: the one the submissions hold)")
    g.add_argument("--out", help="folder for grades.csv and feedback/ (default grading/<assignment>)")
    g.add_argument("--jobs", type=int, default=None, help="submissions graded at once (default: cores)")
    g.add_argument("--scheduler", metavar="ADDRESS",
                   help="grade on the workers of this Dask cluster (e.g. tcp://10.0.0.5:8786) instead of "
                        "--jobs local processes; results and feedback come back here")
    g.add_argument("--cell-timeout", type=int, default=None,
                   help="seconds per cell (default: Execute.timeout of nbgrader_config.py)")
    g.add_argument("--notebook-timeout", type=int, default=None,
                   help="seconds per notebook (default: 3 x the solution's runtime + 60)")
    g.add_argument("--memory-gb", type=float, default=4.0, help="address-space cap per kernel (default 4)")
    g.add_argument("--force", action="store_true", help="regrade students already graded")
    g.add_argument("--no-sandbox", action="store_true",
                   help="grade without bubblewrap (refused by default): student code runs as you and can read "
                        "what you can; every row says 'not sandboxed'")
    g.add_argument("--trust", action="append", default=[], metavar="STUDENT",
                   help="regrade STUDENT without review holds, after you have looked at the flagged code "
                        "(repeatable); the flags stay in the row")
    g.add_argument("--gradebook", action="store_true",
                   help="also write every cell's score into nbgrader's gradebook (review rows marked for manual "
                        "grading) and put feedback where `nbgrader release_feedback` finds it; SUBMISSIONS is then "
                        "nbgrader's submitted/ folder after `nbgrader collect`")
    g.set_defaults(run=_grade)

    e = sub.add_parser("export", help="grades from nbgrader's gradebook as a CSV that Canvas or Moodle imports",
                       description="The roster CSV maps nbgrader_id to the LMS's ids (course_tools/lms_export.py "
                                   "names its columns). Exit 1 when a gradebook student is not in the roster.")
    e.add_argument("--format", choices=["canvas", "moodle"], required=True)
    e.add_argument("--roster", required=True, help="CSV with an nbgrader_id column and the LMS's id columns")
    e.add_argument("--out", help="file to write (default grades-FORMAT.csv)")
    e.add_argument("--assignment", action="append", default=[], help="only these assignments (repeatable; "
                   "default: every assignment in the gradebook)")
    e.add_argument("--column", action="append", default=[], metavar="ASSIGNMENT=HEADING",
                   help="the LMS's column heading for an assignment, e.g. '04_masking=Masking (1234)' for Canvas "
                        "assignment 1234 (repeatable)")
    e.set_defaults(run=_export)

    h = sub.add_parser("hub", help="JupyterHub for a roster: students get the student view, instructors the formgrader",
                       description="Run as root. The roster CSV has columns username,role (student or instructor); each "
                                   "is an existing Unix user. See README, 'Running a class'.")
    h.add_argument("--roster", required=True)
    h.add_argument("--bind", default="http://127.0.0.1:8000", help="the hub's public URL (default http://127.0.0.1:8000)")
    h.add_argument("--exchange", default="/srv/nbgrader/exchange", help="nbgrader's exchange, outside any home")
    h.add_argument("--course-dir", default="/srv/nbgrader/course",
                   help="the instructors' course folder (solutions/, notebooks/, nbgrader_config.py, the gradebook)")
    h.add_argument("--state", default="/srv/course-hub", help="the hub's own files (database, cookie secret, scripts)")
    h.add_argument("--extra-config", help="a JupyterHub config file loaded last (an LMS or OAuth login, README)")
    h.set_defaults(run=_hub)

    s = sub.add_parser("slides", help="reveal.js slides (offline) from a solution notebook, with its figures",
                       description="Runs the solution notebook (hidden tests removed) and writes "
                                   "OUT/<assignment>.slides.html with reveal.js and MathJax beside it.")
    s.add_argument("assignment", nargs="?", help="assignment id, e.g. 06_transformer")
    s.add_argument("--all", action="store_true", help="every assignment, in course order")
    s.add_argument("--out", help="output folder (default build/slides)")
    s.add_argument("--no-execute", action="store_true", help="do not run the notebook (no figures)")
    s.add_argument("--timeout", type=int, default=900, help="seconds per cell (default 900)")
    s.add_argument("--lang", choices=["zh_CN"], help="the Chinese edition (markdown from locale/zh_CN; "
                                                      "default out build/slides/zh_CN)")
    s.set_defaults(run=_slides)

    w = sub.add_parser("site", help="the course as a static web site (Jupyter Book), from notebooks/ and README.md")
    w.add_argument("--out", help="output folder (default build/site); the HTML is in OUT/_build/html")
    w.add_argument("--lang", choices=["zh_CN"], help="the Chinese edition's notebooks (notebooks/zh_CN; "
                                                      "default out build/site-zh_CN)")
    w.add_argument("--slides", help="publish these slides (a `course slides` folder, e.g. build/slides) "
                                    "with the site, linked from the Lecturers page")
    w.set_defaults(run=_site)

    j = sub.add_parser("lab", help="JupyterLab for students (default) or instructors, nbgrader set up",
                       description="Students: serves notebooks/ with nbgrader's instructor extensions "
                                   "disabled. --instructor: serves the repository with the formgrader "
                                   "on solutions/. Other arguments go to `jupyter lab`.")
    j.add_argument("--instructor", action="store_true", help="formgrader and create-assignment enabled")
    j.set_defaults(run=_lab)

    d = sub.add_parser("doctor", help="versions, device, threads, data sets found")
    d.set_defaults(run=_doctor)
    return p


# top-level modules of the "instructor" extra (pyproject.toml), absent from a student's install
INSTRUCTOR_MODULES = {"jupytext", "sphinx_revealjs", "jupyter_server_mathjax", "jupyter_book", "sphinx", "myst_nb"}


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``course`` console script."""
    args, rest = parser().parse_known_args(argv)
    if args.command == "lab":
        args.jupyter_args = rest
    elif rest:
        parser().error(f"unrecognized arguments: {' '.join(rest)}")
    try:
        return args.run(args)
    except ModuleNotFoundError as error:
        if error.name and error.name.split(".")[0] in INSTRUCTOR_MODULES:
            print(f"course {args.command}: needs {error.name}, one of the instructor's tools; install them with "
                  f"`make install-dev` or `pip install -e \".[instructor]\"`", file=sys.stderr)
            return 2
        raise
    except (FileNotFoundError, ValueError, RuntimeError) as error:
        from course_tools.terminal import printable  # messages may name student folders: escape them

        print(printable(f"course {args.command}: {error}"), file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
