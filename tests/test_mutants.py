"""course mutants: each listed mistake is applied, judged by the graded tests, and undone."""

import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from course_tools.mutants import MistakeListError, load_mistakes, mistakes_path, run_mistakes
from course_tools.pairing import read_text_notebook

ROOT = Path(__file__).resolve().parents[1]
FIX = "99_fixture"
LIST = (ROOT / "tests" / "fixtures" / f"{FIX}.mistakes.toml").read_text()


def _course(tmp: Path, mistakes: str = LIST) -> Path:
    (tmp / "solutions" / FIX).mkdir(parents=True)
    text = (ROOT / "tests" / "fixtures" / f"{FIX}.py").read_text()
    nbformat.write(read_text_notebook(text), tmp / "solutions" / FIX / f"{FIX}.ipynb")
    shutil.copy(ROOT / "nbgrader_config.py", tmp / "nbgrader_config.py")
    mistakes_path(tmp, FIX).parent.mkdir(parents=True)
    mistakes_path(tmp, FIX).write_text(mistakes)
    return tmp


@pytest.mark.slow  # starts a kernel
def test_every_listed_mistake_is_caught_by_the_tests_of_its_exercise(tmp_path):
    report = run_mistakes(_course(tmp_path), FIX, progress=False)
    assert [(o.mistake.name, o.caught_by, o.visible) for o in report.outcomes] == [
        ("subtracts", ["test_add"], True),
        ("adds the sizes", ["test_add"], False),          # only the hidden add(-1.5, 1.5) == 0 sees it
        ("sum of squares without the square root", ["test_norm"], True),
        ("sum of absolute values", ["test_norm"], True),
        ("divides by one too many", ["test_mean"], True),
    ]
    assert report.score == 1.0 and not report.wrong_messages
    assert report.outcomes[0].message == "AssertionError: expected 3, got -1"
    assert report.outcomes[1].message == "", "a hidden test's message never counts as what the student sees"
    assert [m.name for m in report.uncatchable] == ["a median"]
    table = report.table()
    assert "5 mistakes, 5 caught (100%), 4 diagnosed by a visible test's message (80%), 1 caught by hidden tests only" \
        in table and "not listed: for the fixture's tests" in table
    assert "says: AssertionError: expected 3, got -1" in table
    assert "(hidden test only, NO REASON listed: hidden_only = ...)" in table
    assert "(1 with no reason listed)" in table
    assert [o.mistake.name for o in report.unexplained_hidden] == ["adds the sizes"]
    # only "subtracts" lists its message words: the others teach nothing checked (the command fails on them)
    assert [o.mistake.name for o in report.undiagnosed] == [
        "adds the sizes", "sum of squares without the square root", "sum of absolute values", "divides by one too many"]


def test_a_hidden_only_mistake_gives_its_reason():
    from course_tools.mutants import Mistake, Outcome, Report

    why = "the visible test adds two positive numbers; only the hidden one adds opposites"
    explained = Outcome(Mistake("add", "adds the sizes", "a", "b", hidden_only=why), ["test_add"])
    bare = Outcome(Mistake("add", "adds twice", "a", "c"), ["test_add"])
    report = Report("99_fixture", [explained, bare], [], 0.0, 0.0)
    assert report.unexplained_hidden == [bare]
    assert f"(hidden test only: {why})" in report.table()


def test_a_bare_message_does_not_diagnose():
    from course_tools.mutants import Mistake, Outcome, is_bare

    assert is_bare("AssertionError") and is_bare("AssertionError: ") and is_bare(
        "AssertionError: Tensor-likes are not close!\n\nMismatched elements: 3 / 4")
    assert not is_bare("AssertionError: the weights sum to 1 over the queries, not the keys")
    mistake = Mistake("c", "n", "a", "b", message="over the keys")
    assert not Outcome(mistake, ["t"], message="AssertionError: expected 3", visible=True).message_ok
    assert Outcome(mistake, ["t"], message="AssertionError: sums to 1 OVER THE KEYS", visible=True).diagnosed
    assert not Outcome(mistake, ["t"], message="", visible=False).message_ok, "a hidden catch never has the words"


@pytest.mark.slow  # starts a kernel
def test_a_mistake_the_tests_miss_is_reported_and_fails_the_command(tmp_path):
    course = _course(tmp_path, LIST + '\n[[mistake]]\ncell = "add"\nname = "adds the other way round"\n'
                                      'replace = "return a + b"\nby = "return b + a"\n')
    result = subprocess.run([sys.executable, "-m", "course_tools.cli", "mutants", FIX], cwd=course,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "6 mistakes, 5 caught (83%)" in result.stdout
    assert "adds the other way round" in result.stdout and "MISSED" in result.stdout


@pytest.mark.slow  # starts a kernel
def test_a_message_without_its_listed_words_fails_the_command(tmp_path):
    course = _course(tmp_path, LIST.replace('message = "expected 3"', 'message = "is the sign flipped"'))
    result = subprocess.run([sys.executable, "-m", "course_tools.cli", "mutants", FIX], cwd=course,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "6 mistakes" not in result.stdout and "5 mistakes, 5 caught (100%), 3 diagnosed" in result.stdout
    assert "WRONG MESSAGE, wants 'is the sign flipped': AssertionError: expected 3, got -1" in result.stdout


def test_a_list_that_no_longer_matches_the_notebook_is_an_error(tmp_path):
    course = _course(tmp_path, '[[mistake]]\ncell = "add"\nname = "stale"\nreplace = "return a+b"\nby = "x"\n')
    with pytest.raises(MistakeListError, match="occurs 0 times in cell 'add'"):
        run_mistakes(course, FIX, progress=False)
    course2 = _course(tmp_path / "b", '[[mistake]]\ncell = "test_add"\nname = "n"\nreplace = "a"\nby = "b"\n')
    with pytest.raises(MistakeListError, match="not a solution cell"):
        run_mistakes(course2, FIX, progress=False)


@pytest.mark.slow  # starts a kernel
def test_a_mistake_that_leaks_into_later_exercises_stops_the_run(tmp_path):
    leaky = LIST + ('\n[[mistake]]\ncell = "add"\nname = "subtracts, and breaks math.sqrt for everyone"\n'
                    'replace = "return a + b"\nby = "import math\\n    math.sqrt = lambda v: -1.0\\n    return a - b"\n')
    course = _course(tmp_path, leaky)
    with pytest.raises(RuntimeError, match="test_norm no longer pass"):
        run_mistakes(course, FIX, progress=False)


def test_every_notebook_lists_its_mistakes_outside_the_release():
    for folder in sorted((ROOT / "solutions").glob("[0-9][0-9]_*")):
        path = mistakes_path(ROOT, folder.name)
        if path.exists():
            assert load_mistakes(path), f"{path} lists nothing"
        assert not list((ROOT / "notebooks" / folder.name).glob("*.toml")), "a list of mistakes in the release"


ASSIGNMENTS = sorted(p.parent.name for p in (ROOT / "solutions").glob("[0-9][0-9]_*/*.ipynb")
                     if p.stem == p.parent.name)
# notebooks whose mistakes CI runs (a few minutes in all); the others' take 2-10 minutes each on
# 2 cores, on top of their nbval run: run them with `course mutants NN_topic` (figures in the README)


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_every_exercise_lists_three_mistakes_that_match_its_solution(assignment):
    """Static: the list exists, names solution cells, each text occurs once, >= 3 mistakes per exercise."""
    from nbgrader.utils import is_solution

    from course_tools.mutants import _plan

    path = mistakes_path(ROOT, assignment)
    assert path.is_file(), f"{assignment} lists no plausible mistakes ({path.relative_to(ROOT)})"
    nb = nbformat.read(ROOT / "solutions" / assignment / f"{assignment}.ipynb", as_version=4)
    listed = [m for m in load_mistakes(path) if not m.uncatchable]
    _plan(nb, listed)                                    # raises naming the first mistake that no longer matches
    for cell in nb.cells:
        if cell.cell_type == "code" and is_solution(cell):
            count = sum(m.cell == cell.id for m in listed)
            assert count >= 3, f"{assignment}: exercise {cell.id} lists {count} plausible mistakes, fewer than 3"


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
@pytest.mark.slow  # runs the whole notebook
def test_the_notebook_runs_and_its_tests_catch_every_listed_mistake(assignment, record_property):
    """The suite's one run of each solution notebook: top to bottom in one kernel, as nbval would (every
    cell runs without an error, every graded cell scores full points), then every listed mistake."""
    report = run_mistakes(ROOT, assignment, progress=False, timeout=1800, whole=True)
    print(report.table())
    record_property("notebook_run", (assignment, report.setup_seconds, len(report.outcomes), report.seconds))
    assert report.score == 1.0 and not report.wrong_messages, report.table()
    # issue 39: every mistake is named by a visible message holding its listed words, or says why not
    assert not report.undiagnosed, [(o.mistake.name, o.message[:200]) for o in report.undiagnosed]
