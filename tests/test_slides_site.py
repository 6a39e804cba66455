"""`course slides`, `course site` and `course lab`: the parts that need no browser."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import nbformat
import pytest

from course_tools.cli import main
from course_tools.lab import CONFIG, lab_command, lab_environment
from course_tools.site import overview, readme_sections, sequence_page
from course_tools.slides import (
    count_figures, expected_slides, export, mathjax_source, reveal_source, strip_hidden_tests,
)


def _cell(kind: str, source: str, slide: str | None) -> nbformat.NotebookNode:
    cell = nbformat.v4.new_markdown_cell(source) if kind == "md" else nbformat.v4.new_code_cell(source)
    if slide is not None:
        cell.metadata["slideshow"] = {"slide_type": slide}
    return cell


def test_strip_hidden_tests_keeps_visible_asserts_and_solution_code():
    nb = nbformat.v4.new_notebook(cells=[
        _cell("code", "def f():\n    ### BEGIN SOLUTION\n    return 1\n    ### END SOLUTION", "-"),
        _cell("code", '"""Check f."""\nassert f() == 1\n### BEGIN HIDDEN TESTS\nassert f() != 2\n'
                      "### END HIDDEN TESTS\n### BEGIN HIDDEN TESTS\nassert True\n### END HIDDEN TESTS", "-"),
    ])
    assert strip_hidden_tests(nb) == 2
    assert nb.cells[0].source == "def f():\n    return 1"
    assert nb.cells[1].source == '"""Check f."""\nassert f() == 1'


def test_expected_slides_counts_slides_and_subslides_not_notes_or_skips():
    cells = [_cell("md", "# Title", "slide"), _cell("md", "notes", "notes"), _cell("code", "x", "-"),
             _cell("md", "## A", "subslide"), _cell("code", "y", "fragment"), _cell("md", "gone", "skip"),
             _cell("md", "## B", "slide")]
    assert expected_slides(nbformat.v4.new_notebook(cells=cells)) == 3
    # the first shown cell opens a slide even without metadata; a leading skip does not count
    cells = [_cell("md", "skipped", "skip"), _cell("md", "intro", None), _cell("md", "## B", "slide")]
    assert expected_slides(nbformat.v4.new_notebook(cells=cells)) == 2


def test_every_solution_notebook_has_slide_metadata_on_every_cell(root):
    for path in sorted((root / "solutions").glob("*/*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        missing = [i for i, c in enumerate(nb.cells) if "slide_type" not in c.metadata.get("slideshow", {})]
        assert not missing, f"{path.name}: cells {missing} have no slideshow.slide_type"
        assert expected_slides(nb) >= 8, f"{path.name}: only {expected_slides(nb)} slides"
        assert any(c.metadata["slideshow"]["slide_type"] == "notes" for c in nb.cells), f"{path.name}: no speaker notes"


def test_offline_assets_come_from_the_wheels():
    assert (reveal_source() / "dist" / "reveal.js").read_text(encoding="utf-8")[:200].find("reveal.js") >= 0
    assert (reveal_source() / "plugin" / "notes" / "notes.js").is_file()
    assert (mathjax_source() / "MathJax.js").is_file()
    assert (mathjax_source() / "config" / "TeX-AMS-MML_HTMLorMML-full.js").is_file()
    from course_tools.slides import THEME

    theme = (reveal_source() / "dist" / "theme" / f"{THEME}.css").read_text(encoding="utf-8")
    assert "@import url(http" not in theme.replace(" ", ""), f"theme {THEME} imports remote fonts"


def test_exported_html_loads_nothing_from_the_network(root):
    nb = nbformat.read(root / "solutions" / "04_masking" / "04_masking.ipynb", as_version=4)
    strip_hidden_tests(nb)
    page = export(nb, "04 · Masking")
    import re

    loads = re.findall(r'<(?:script|link|img)[^>]*(?:src|href)="([^"]+)"', page)
    assert loads, "the slides load no scripts at all?"
    remote = [url for url in loads if re.match(r"(https?:)?//", url)]
    assert not remote, f"slides load from the network: {remote}"
    assert "_reveal/dist/reveal.js" in loads and any(u.startswith("_mathjax/MathJax.js") for u in loads)
    assert "HIDDEN TESTS" not in page and "BEGIN SOLUTION" not in page
    assert page.count('<aside class="notes">') >= 1
    assert count_figures(nb) == 0  # not executed: no figures yet


def test_overview_reads_the_title_cell(root):
    item = overview(root / "notebooks" / "04_masking" / "04_masking.ipynb")
    assert item.title == "04 · Masking"
    assert len(item.objectives) == 4 and item.objectives[0].startswith("**build** padding")
    assert item.prerequisites.startswith("Notebook 03")
    assert item.hours == 1.5 and item.short_time == "1.5 hours"
    assert item.graded_cells >= 5 and item.points >= 15
    # multi-line objectives are joined
    word2vec = overview(root / "notebooks" / "01_word2vec" / "01_word2vec.ipynb")
    assert any("subsampling, the dynamic window" in o for o in word2vec.objectives)
    page = sequence_page([item, word2vec])
    assert "| 04 | [04 · Masking](notebooks/04_masking) | 1.5 hours |" in page
    assert page.count("**Learning objectives.**") == 2


def test_readme_has_the_pages_the_site_takes(root):
    sections = readme_sections(root / "README.md")
    for heading in ("Students", "Instructors", "Lecturers", "Two commands"):
        assert sections.get(heading, "").strip(), f"README has no '## {heading}' section"
    assert "course slides" in sections["Lecturers"] and "course site" in sections["Lecturers"]
    assert "make lab-instructor" in sections["Instructors"]


def test_lab_configuration_for_students_and_instructors(root, tmp_path):
    student = lab_environment(tmp_path, instructor=False, base={"JUPYTER_CONFIG_PATH": "/x"})
    paths = student["JUPYTER_CONFIG_PATH"].split(os.pathsep)
    assert paths == [str(CONFIG / "student"), str(CONFIG / "common"), "/x"]
    assert student["COURSE_EXCHANGE"] == str(tmp_path / "exchange")
    instructor = lab_environment(tmp_path, instructor=True, base={})
    assert instructor["JUPYTER_CONFIG_PATH"] == str(CONFIG / "common")
    assert any(a == f"--ServerApp.root_dir={tmp_path / 'notebooks'}" for a in lab_command(tmp_path, False))
    assert any(a == f"--ServerApp.root_dir={tmp_path}" for a in lab_command(tmp_path, True, ["--port", "1"]))
    page = json.loads((CONFIG / "student" / "labconfig" / "page_config.json").read_text())
    assert page["disabledExtensions"] == {"@jupyter/nbgrader:formgrader": True,
                                          "@jupyter/nbgrader:create-assignment": True}
    server = json.loads((CONFIG / "student" / "jupyter_server_config.json").read_text())
    assert server["ServerApp"]["jpserver_extensions"] == {"nbgrader.server_extensions.formgrader": False}
    # the extension ids exist in the installed nbgrader lab extension
    import sys

    bundle = Path(sys.prefix) / "share" / "jupyter" / "labextensions" / "@jupyter" / "nbgrader" / "static"
    code = "".join(p.read_text(encoding="utf-8", errors="ignore") for p in bundle.glob("*.js"))
    for plugin in page["disabledExtensions"]:
        assert f'"{plugin}"' in code, f"nbgrader's lab extension has no plugin {plugin}"


def test_nbgrader_exchange_comes_from_course_lab(tmp_path, monkeypatch):
    from traitlets.config import Config

    c = Config()
    monkeypatch.setenv("COURSE_EXCHANGE", str(tmp_path / "exchange"))
    exec((CONFIG / "common" / "nbgrader_config.py").read_text(), {"get_config": lambda: c})
    assert c.Exchange.root == str(tmp_path / "exchange")


def test_slides_and_site_commands(tmp_path, capsys, root, monkeypatch):
    monkeypatch.chdir(root)
    assert main(["slides"]) == 2
    assert "name one ASSIGNMENT or pass --all" in capsys.readouterr().err
    assert main(["slides", "04_masking", "--all"]) == 2
    assert main(["slides", "99_nothing", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "no solution notebook" in err and "04_masking" in err
    assert main(["slides", "--all", "--no-execute", "--out", str(tmp_path / "all")]) == 0
    decks = sorted(p.name for p in (tmp_path / "all").glob("*.slides.html"))
    assert decks == sorted(f"{p.parent.name}.slides.html" for p in (root / "solutions").glob("*/*.ipynb"))
    index = (tmp_path / "all" / "index.html").read_text()
    assert all(f'href="{d}"' in index for d in decks)


def test_site_command_names_what_is_missing_before_building(tmp_path, capsys, monkeypatch):
    """`course site` from a course with no release, a README without a page's section, or a slides
    folder without decks: exit 2, a message naming the fix, and no book built."""
    root = _tiny_course(tmp_path, "# 01 · Tiny")
    monkeypatch.chdir(root / "solutions")  # found from a subfolder
    out = tmp_path / "site"
    assert main(["site", "--slides", str(tmp_path), "--out", str(out)]) == 2
    assert "course site: no *.slides.html in" in capsys.readouterr().err
    readme = (root / "README.md").read_text()
    (root / "README.md").write_text(readme.replace("## Instructors", "## Graders"))
    assert main(["site", "--out", str(out)]) == 2
    assert "README.md has no '## Instructors' section" in capsys.readouterr().err
    (root / "README.md").write_text(readme)
    (root / "notebooks" / "01_tiny" / "01_tiny.ipynb").unlink()
    assert main(["site", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "course site: no student notebooks" in err and "run `course build` first" in err
    assert not (out / "_build").exists(), "jupyter-book never ran"


@pytest.mark.parametrize("instructor", [False, True])
def test_lab_command_serves_the_right_folder_with_the_right_settings(tmp_path, capsys, monkeypatch, instructor):
    """`course lab [--instructor] ARGS`: the exchange made, JupyterLab started on notebooks/ (students) or
    the course (instructors) with the matching configuration and ARGS (JupyterLab itself is not started)."""
    root = _tiny_course(tmp_path, "# 01 · Tiny")
    monkeypatch.chdir(root / "notebooks")
    started = []
    monkeypatch.setattr(os, "execve", lambda program, argv, env: started.append((program, argv, env)))
    assert main(["lab", *(["--instructor"] if instructor else []), "--port", "8899"]) == 0
    [(program, argv, env)] = started
    served = root if instructor else root / "notebooks"
    assert argv[:3] == [program, "-m", "jupyterlab"] and f"--ServerApp.root_dir={served}" in argv
    assert argv[-2:] == ["--port", "8899"], "the other arguments go to jupyter lab"
    assert f"serving {served}, exchange {root / 'exchange'}" in capsys.readouterr().out
    assert (root / "exchange").is_dir() and (root / "exchange").stat().st_mode & 0o777 == 0o777
    assert env["COURSE_EXCHANGE"] == str(root / "exchange")
    assert (str(CONFIG / "student") in env["JUPYTER_CONFIG_PATH"].split(os.pathsep)) is not instructor
    assert (root / "grading").is_dir() is instructor, "the formgrader's gradebook folder, for instructors only"


def _tiny_course(tmp_path: Path, markdown: str) -> Path:
    """A one-notebook course with the README sections the site needs."""
    root = tmp_path / "course"
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell(markdown)])
    for folder in ("solutions", "notebooks"):
        (root / folder / "01_tiny").mkdir(parents=True)
        nbformat.write(nb, root / folder / "01_tiny" / "01_tiny.ipynb")
    (root / "nbgrader_config.py").write_text("c = get_config()\n")
    (root / "README.md").write_text("# Tiny course\n\nIntro.\n\n## Two commands\n\nmake lab\n\n## Students\n\nS.\n\n"
                                    "## Instructors\n\nI.\n\n## Lecturers\n\nL.\n")
    return root


@pytest.mark.slow  # three jupyter-book builds (about 20 s)
def test_site_builds_a_tiny_course_and_fails_on_warnings(tmp_path):
    from course_tools.site import build_site

    title = ("# 01 · Tiny\n\n**Learning objectives.** After this notebook you can\n1. **add** numbers;\n\n"
             "**Prerequisites.** None.\n\n**Estimated time.** 2 hours. Fast.\n")
    # a WeChat article's address, as the reading list has them: its `&` must reach the page once escaped
    wechat = "https://mp.weixin.qq.com/s?__biz=MzA3&mid=2650&idx=1&sn=0157#rd"
    root = _tiny_course(tmp_path, title + f"\nFurther reading: [an article]({wechat}).\n")
    index = build_site(root, tmp_path / "site", progress=False)
    sequence = (index.parent / "sequence.html").read_text()
    assert "01 · Tiny" in sequence and "2 hours" in sequence and "add</strong> numbers" in sequence
    assert (index.parent / "notebooks" / "01_tiny.html").is_file()
    page = (index.parent / "notebooks" / "01_tiny.html").read_text()
    assert 'href="https://mp.weixin.qq.com/s?__biz=MzA3&amp;mid=2650&amp;idx=1&amp;sn=0157#rd"' in page, \
        re.findall(r'href="https://mp[^"]*"', page)
    assert (index.parent / "mathjax" / "MathJax.js").is_file()

    # published slides: copied with their assets, linked from the lecturers page
    decks = tmp_path / "decks"
    (decks / "_reveal" / "dist").mkdir(parents=True)
    (decks / "_reveal" / "dist" / "reveal.js").write_text("//")
    (decks / "01_tiny.slides.html").write_text("<html><title>01 · Tiny</title></html>")
    index = build_site(root, tmp_path / "site2", progress=False, slides=decks)
    assert 'href="slides/01_tiny.slides.html"' in (index.parent / "lecturers.html").read_text()
    assert (index.parent / "slides" / "01_tiny.slides.html").is_file()
    assert (index.parent / "slides" / "_reveal" / "dist" / "reveal.js").is_file()
    with pytest.raises(FileNotFoundError, match="course slides --all"):
        build_site(root, tmp_path / "site3", progress=False, slides=tmp_path)

    broken = _tiny_course(tmp_path / "b", title + "\nSee {doc}`a page that does not exist <nowhere>`.\n")
    with pytest.raises(RuntimeError, match="nowhere"):
        build_site(broken, tmp_path / "b" / "site", progress=False)


@pytest.mark.slow  # runs a notebook
def test_build_deck_draws_figures_under_agg_and_reports_a_failing_cell(tmp_path, monkeypatch):
    from course_tools.slides import build_deck

    monkeypatch.setenv("MPLBACKEND", "Agg")  # as in the test suite: the kernel must still draw inline
    cells = [_cell("md", "# 01 · Tiny", "slide"),
             _cell("code", "import matplotlib.pyplot as plt\nplt.plot([1, 2, 3])\nplt.show()", "-"),
             _cell("md", "## Notes", "notes")]
    root = _tiny_course(tmp_path, "# 01 · Tiny")
    nbformat.write(nbformat.v4.new_notebook(cells=cells), root / "solutions" / "01_tiny" / "01_tiny.ipynb")
    deck = build_deck(root, "01_tiny", tmp_path / "out", progress=False)
    assert (deck.slides, deck.figures, deck.notes) == (1, 1, 1)
    assert "data:image/png;base64," in deck.path.read_text()
    assert os.environ["MPLBACKEND"] == "Agg", "build_deck must restore the environment"

    cells.append(_cell("code", "raise ValueError('boom in the notebook')", "-"))
    nbformat.write(nbformat.v4.new_notebook(cells=cells), root / "solutions" / "01_tiny" / "01_tiny.ipynb")
    with pytest.raises(RuntimeError, match="01_tiny: a cell failed.*boom in the notebook"):
        build_deck(root, "01_tiny", tmp_path / "out", progress=False)
