"""One grading rule everywhere, one configuration, and plain nbgrader as the README says.

* `course validate`, nbgrader's Validator (what JupyterLab's Validate button runs) and `course grade`
  give every graded cell the same verdict: cells that write to stderr, return a value, raise, time
  out or pass;
* `course grade`'s scratch configuration is the repository's nbgrader_config.py plus the grader's own
  settings, so an instructor's change reaches it;
* the README's plain-nbgrader commands work on a fresh copy and change no tracked file.
"""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from course_tools.build import generate_release
from course_tools.grading import Settings, grade, scratch_config

ROOT = Path(__file__).resolve().parents[1]
VERDICTS = "98_verdicts"
TIMEOUT = 4

# (grade_id, source, points): what each graded cell does
CASES = [
    ("passes", '"""passes"""\nassert answer() == 42', 2),
    ("stderr", '"""writes a warning to stderr"""\nimport sys\nassert answer() == 42\nprint("careful", file=sys.stderr)', 2),
    ("value", '"""its value is a number: partial credit"""\nassert answer() == 42\n0.5', 2),
    ("raises", '"""raises"""\nassert answer() == 41, f"expected 41, got {answer()}"', 2),
    ("timeout", '"""runs past its time limit"""\nimport time\nwhile True:\n    time.sleep(0.05)', 2),
]


def _verdict_course(folder: Path) -> Path:
    nb = nbformat.v4.new_notebook()
    title = nbformat.v4.new_markdown_cell("# 98 · verdicts")
    title.id = "title"
    answer = nbformat.v4.new_code_cell("def answer():\n    ### BEGIN SOLUTION\n    return 42\n    ### END SOLUTION")
    answer.id = "answer"
    answer.metadata["nbgrader"] = {"grade": False, "solution": True, "locked": False, "grade_id": "answer",
                                   "schema_version": 3}
    nb.cells = [title, answer]
    for grade_id, source, points in CASES:
        cell = nbformat.v4.new_code_cell(source)
        cell.id = grade_id
        cell.metadata["nbgrader"] = {"grade": True, "solution": False, "locked": True, "points": points,
                                     "grade_id": grade_id, "schema_version": 3}
        nb.cells.append(cell)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    (folder / "solutions" / VERDICTS).mkdir(parents=True)
    nbformat.write(nb, folder / "solutions" / VERDICTS / f"{VERDICTS}.ipynb")
    config = (ROOT / "nbgrader_config.py").read_text().replace("c.Execute.timeout = 300", f"c.Execute.timeout = {TIMEOUT}")
    (folder / "nbgrader_config.py").write_text(config)
    generate_release(folder, VERDICTS, folder / "notebooks")
    return folder


@pytest.mark.slow
def test_validate_the_validate_button_and_grade_agree_cell_by_cell(tmp_path, monkeypatch):
    from nbgrader.validator import Validator

    from course_tools.grading import course_config
    from course_tools.validate import validate

    course = _verdict_course(tmp_path / "course")
    release = json.loads((course / "notebooks" / VERDICTS / f"{VERDICTS}.ipynb").read_text())
    for cell in release["cells"]:
        if cell["id"] == "answer":
            cell["source"] = "def answer():\n    return 42"
    student = tmp_path / "subs" / "ada" / VERDICTS / f"{VERDICTS}.ipynb"
    student.parent.mkdir(parents=True)
    student.write_text(json.dumps(release))
    monkeypatch.chdir(course)

    # 1. course validate
    by_validate = {r.grade_id: (r.passed, r.score) for r in validate(student, root=course)}
    # 2. the Validate button: nbgrader's Validator with the course's configuration
    button = Validator(config=course_config(course)).validate(str(student))
    failed_sources = {f["source"] for f in button.get("failed", [])}
    by_button = {gid: src.strip() not in failed_sources for gid, src, _ in CASES}
    # 3. course grade
    out = tmp_path / "graded"
    grade(course, tmp_path / "subs", VERDICTS, out=out, jobs=1,
          settings=Settings(cell_timeout=TIMEOUT, notebook_timeout=300, interrupt_grace=3))
    with (out / "grades.csv").open() as handle:
        row = next(csv.DictReader(handle))
    failed = set(row["failed_tests"].split())
    by_grade = {gid: gid not in failed for gid, _, _ in CASES}

    table = [(gid, by_validate[gid][0], by_button[gid], by_grade[gid]) for gid, _, _ in CASES]
    print("\ncell        validate  button  grade")
    for gid, *verdicts in table:
        print(f"{gid:<11} " + "  ".join(f"{'PASS' if v else 'FAIL':<7}" for v in verdicts))
    assert all(v == b == g for _, v, b, g in table), table
    expected = {"passes": True, "stderr": False, "value": False, "raises": False, "timeout": False}
    assert {gid: v for gid, v, _, _ in table} == expected
    assert by_validate["value"][1] == 0.5, "partial credit is the cell's value"
    total = sum(score for _, score in by_validate.values())
    assert float(row["score"]) == total, (row["score"], by_validate)


def test_scratch_configuration_is_the_course_configuration(tmp_path):
    from traitlets.config.loader import PyFileConfigLoader

    course = tmp_path / "course"
    course.mkdir()
    (course / "nbgrader_config.py").write_text(
        "c = get_config()\nc.Execute.timeout = 11\nc.LimitOutput.max_lines = 7\n"
        "c.AssignLatePenalties.plugin_class = 'nbgrader.plugins.latepenalty.LateSubmissionPlugin'\n"
        "c.Autograde.autograde_preprocessors = ['nbgrader.preprocessors.Execute', "
        "'nbgrader.preprocessors.LimitOutput', 'nbgrader.preprocessors.SaveAutoGrades']\n")
    from course_tools.grading import course_cell_timeout

    assert course_cell_timeout(course) == 11
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    (scratch / "nbgrader_config.py").write_text(scratch_config(
        course, scratch, cell_timeout=course_cell_timeout(course), notebook_timeout=99, kernel_name="k",
        runtime="/tmp/x"))
    config = PyFileConfigLoader("nbgrader_config.py", path=str(scratch)).load_config()
    assert config.LimitOutput.max_lines == 7, "the instructor's output limit reaches the grader"
    assert config.AssignLatePenalties.plugin_class.endswith("LateSubmissionPlugin")
    assert config.Execute.timeout == 11 and config.GuardedExecute.notebook_timeout == 99
    assert config.Autograde.autograde_preprocessors == [
        "course_tools.gradeexec.GuardedExecute", "nbgrader.preprocessors.LimitOutput",
        "course_tools.gradeexec.CapOutput", "nbgrader.preprocessors.SaveAutoGrades"]
    assert config.CourseDirectory.root == str(scratch) and config.CourseDirectory.db_url == "sqlite:///gradebook.db"
    assert "ClearHiddenTests" in " ".join(config.GenerateFeedback.preprocessors)


def test_validate_names_another_assignments_notebook_before_running(tmp_path, capsys, monkeypatch):
    from course_tools.cli import main

    wrong = tmp_path / "04_masking" / "04_masking.ipynb"
    wrong.parent.mkdir()
    shutil.copy(ROOT / "notebooks" / "03_attention" / "03_attention.ipynb", wrong)
    monkeypatch.chdir(ROOT)
    assert main(["validate", str(wrong)]) == 2
    captured = capsys.readouterr()
    assert "holds the 03_attention notebook" in captured.err and "running" not in captured.out


@pytest.mark.slow
def test_plain_nbgrader_as_the_readme_says(tmp_path):
    """The README's plain-nbgrader commands, on a copy of the tracked files, change no tracked file."""
    files = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout.split(b"\0")
    copy = tmp_path / "clone"
    for name in filter(None, files):
        source = ROOT / name.decode()
        if source.is_file():
            (copy / name.decode()).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, copy / name.decode())
    subprocess.run(["git", "init", "-q"], cwd=copy, check=True)
    subprocess.run(["git", "add", "-A"], cwd=copy, check=True)
    subprocess.run(["git", "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "copy"], cwd=copy, check=True)
    readme = (ROOT / "README.md").read_text()
    block = readme.split("<!-- plain-nbgrader -->")[1].split("```bash")[1].split("```")[0]
    commands = [line.split("#")[0].strip() for line in block.splitlines() if line.split("#")[0].strip()]
    assert any("generate_assignment" in c for c in commands) and any("autograde" in c for c in commands)
    nbgrader_bin = str(Path(sys.executable).parent / "nbgrader")
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}  # a fresh shell: the venv is not activated
    for command in commands:
        command = command.replace(".venv/bin/nbgrader", nbgrader_bin)
        result = subprocess.run(command, shell=True, cwd=copy, capture_output=True, text=True, env=env, timeout=600)
        assert result.returncode == 0, f"{command}\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}"
    changed = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=copy,
                             capture_output=True, text=True).stdout
    assert changed == "", f"plain nbgrader changed tracked files:\n{changed}"
    feedback = list((copy / "grading" / "feedback").rglob("*.html"))
    assert feedback, "generate_feedback wrote no feedback"
    released = copy / "exchange" / "pytorch-nlp-course" / "outbound" / "04_masking" / "04_masking.ipynb"
    assert released.is_file(), "release_assignment put nothing in the repository's exchange/"
