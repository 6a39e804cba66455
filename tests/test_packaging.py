"""The set-up files agree with each other and with the README."""

import re
import tomllib

from traitlets.config import Config


def _requirement(text: str) -> str:
    return re.sub(r"\s+", "", text).lower()


def test_environment_yml_mirrors_pyproject(root):
    pyproject = tomllib.loads((root / "pyproject.toml").read_text())
    declared = {_requirement(d) for d in pyproject["project"]["dependencies"]}
    lines = (root / "environment.yml").read_text().splitlines()
    start = lines.index("  - pip:")
    conda_pip = {_requirement(line.strip()[2:]) for line in lines[start + 1:] if line.strip().startswith("- ")}
    assert declared == conda_pip, f"only in pyproject: {declared - conda_pip}; only in environment.yml: {conda_pip - declared}"
    assert "python=3.11" in (root / "environment.yml").read_text()


def test_torch_is_pinned(root):
    pyproject = tomllib.loads((root / "pyproject.toml").read_text())
    torch_specs = [d for d in pyproject["project"]["dependencies"] if d.startswith("torch")]
    assert torch_specs == ["torch==2.13.0"], torch_specs
    assert pyproject["project"]["scripts"]["course"] == "course_utils.cli:main"


def test_ci_runs_the_readme_test_command(root):
    ci = (root / ".ci" / "run").read_text()
    assert re.search(r"^make test$", ci, re.M), ".ci/run must call `make test`"
    readme = (root / "README.md").read_text()
    assert "make lab" in readme and "make test" in readme
    for audience in ("Students", "Instructors", "Lecturers"):
        assert audience in readme, f"README has no section for {audience}"
    makefile = (root / "Makefile").read_text()
    for target in ("lab:", "test:", "test-gpu:"):
        assert target in makefile


def test_nbgrader_config(root):
    from traitlets.config.loader import PyFileConfigLoader

    c = PyFileConfigLoader("nbgrader_config.py", path=str(root)).load_config()  # as nbgrader loads it
    assert (root / "grading").is_dir(), "loading the configuration makes grading/ for the gradebook"
    exec((root / "nbgrader_config.py").read_text(), {"get_config": Config})  # no __file__: still loads
    assert c.CourseDirectory.source_directory == "solutions"
    assert c.CourseDirectory.release_directory == "notebooks"
    assert c.CourseDirectory.db_url.startswith("sqlite:///grading/")
    assert "grading/" in (root / ".gitignore").read_text().split()
