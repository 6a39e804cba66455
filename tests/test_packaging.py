"""The set-up files agree with each other and with the README."""

import re
import tomllib

from traitlets.config import Config


def _requirement(text: str) -> str:
    return re.sub(r"\s+", "", text).lower()


def _conda_pip(path) -> set[str]:
    lines = path.read_text().splitlines()
    assert "  - python=3.11" in lines, f"{path.name} pins python 3.11"
    start = lines.index("  - pip:")
    return {_requirement(line.strip()[2:]) for line in lines[start + 1:] if line.strip().startswith("- ")}


def test_environment_files_mirror_pyproject(root):
    project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    student = {_requirement(d) for d in project["dependencies"]}
    dev = student | {_requirement(d) for d in extras["instructor"] + extras["test"] if not d.startswith("course_utils")}
    for path, declared in ((root / "environment.yml", student), (root / "environment-dev.yml", dev)):
        conda_pip = _conda_pip(path)
        assert declared == conda_pip, f"{path.name}: only in pyproject: {declared - conda_pip}; only there: {conda_pip - declared}"


def test_a_student_install_has_no_instructor_or_test_packages(root):
    project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    names = {re.split(r"[=<>\[ ]", d)[0].lower() for d in project["dependencies"]}
    for tool in ("jupytext", "jupyter-book", "sphinx-revealjs", "selenium", "pytest", "nbval"):
        assert tool not in names, f"{tool} is the instructor's or the tests', not a student's"
    assert {"torch", "jupyterlab", "nbgrader"} <= names
    assert "course_utils[instructor,cluster]" in project["optional-dependencies"]["test"]
    names = {re.split(r"[=<>\[ ]", d)[0].lower() for d in project["optional-dependencies"]["cluster"]}
    assert "dask" in names and "dask" not in {re.split(r"[=<>\[ ]", d)[0].lower() for d in project["dependencies"]}


def test_torch_is_pinned(root):
    pyproject = tomllib.loads((root / "pyproject.toml").read_text())
    torch_specs = [d for d in pyproject["project"]["dependencies"] if d.startswith("torch")]
    assert torch_specs == ["torch==2.13.0"], torch_specs
    assert pyproject["project"]["scripts"]["course"] == "course_tools.cli:main"


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


def test_the_learner_library_imports_nothing_of_the_grader(root):
    import subprocess
    import sys

    probe = ("import sys, course_utils, course_utils.data, course_utils.plot, course_utils.train, course_utils.memory\n"
             "print(' '.join(sorted({m.split('.')[0] for m in sys.modules})))")
    loaded = set(subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True,
                                cwd=root).stdout.split())
    assert "course_utils" in loaded and "torch" in loaded, "the probe imported the library"
    for tool in ("course_tools", "nbgrader", "nbconvert", "nbclient", "jupytext", "jupyter_book", "sphinx",
                 "sphinx_revealjs", "selenium", "pytest", "nbval"):
        assert tool not in loaded, f"importing course_utils imported {tool}"


def test_the_package_builds_quietly_with_its_data(root, tmp_path):
    """Building the wheel (what `pip install` does) warns of no data folder missing from the packages,
    and the wheel holds JupyterLab's settings and the slides template."""
    import subprocess
    import sys
    import zipfile

    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                           "--quiet", "-w", str(tmp_path), str(root)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "absent from the `packages` configuration" not in done.stdout + done.stderr, done.stderr[-2000:]
    (wheel,) = tmp_path.glob("*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for data in ("course_tools/labconfig/student/jupyter_server_config.json",
                 "course_tools/labconfig/common/labconfig/page_config.json",
                 "course_tools/templates/course_reveal/index.html.j2", "course_tools/release.py"):
        assert data in names, f"the wheel lacks {data}"
