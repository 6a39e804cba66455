"""The Chinese edition (issue 40): notebooks/zh_CN/<assignment>/ is the release with its markdown in
Chinese and nothing else changed, and the same answers get the same row from `course grade` in either
edition, with the feedback page in the language of the submission."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import nbformat
import pytest

from course_tools.build import list_assignments
from course_tools.grading import Settings, grade, with_answers
from course_tools.i18n import LANGUAGES, catalogue_path, edition_path, load_catalogue, translations

ASSIGNMENT = "04_masking"   # the quickest real assignment, fully translated
CJK = re.compile(r"[\u4e00-\u9fff]")


def _editions(root):
    return [(a, lang) for a in list_assignments(root) for lang in LANGUAGES if catalogue_path(root, a, lang).is_file()]


def test_every_catalogue_has_its_edition(root):
    """For each notebook with a catalogue there is notebooks/<lang>/<id>/<id>.ipynb (`course build` writes it)."""
    editions = _editions(root)
    assert editions
    missing = [str(edition_path(root, a, lang).relative_to(root)) for a, lang in editions
               if not edition_path(root, a, lang).is_file()]
    assert not missing, f"run `course build`: {missing}"


@pytest.mark.parametrize("assignment", ["01_word2vec", ASSIGNMENT, "14_training_at_scale"])
def test_an_edition_is_the_release_with_its_markdown_translated(root, assignment):
    """Same cells in the same order, same ids, same nbgrader metadata (grade ids, points, locks), same code;
    only markdown differs, each translated cell being its catalogue's translation of that very English."""
    english = nbformat.read(root / "notebooks" / assignment / f"{assignment}.ipynb", as_version=4)
    chinese = nbformat.read(edition_path(root, assignment, "zh_CN"), as_version=4)
    assert chinese.metadata["language"] == "zh_CN" and "language" not in english.metadata
    assert [(c.cell_type, c.id, c.metadata) for c in chinese.cells] == [(c.cell_type, c.id, c.metadata) for c in english.cells]
    assert [c.source for c in chinese.cells if c.cell_type != "markdown"] == \
        [c.source for c in english.cells if c.cell_type != "markdown"]
    po = load_catalogue(root, assignment, "zh_CN")
    usable = translations(po)
    translated = 0
    for en, zh in zip(english.cells, chinese.cells):
        if en.cell_type != "markdown" or en.source == zh.source:
            continue
        entry = po.find(en.id, by="msgctxt")
        assert entry is not None and entry.msgid == en.source and zh.source == usable[en.id], en.id
        translated += 1
    assert translated == sum(1 for c in english.cells if c.cell_type == "markdown" and c.id in usable
                             and po.find(c.id, by="msgctxt").msgid == c.source)
    assert translated > 0


def _write(folder: Path, student: str, nb) -> None:
    path = folder / student / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(nb))


def _wrong(nb):
    wrong = nbformat.from_dict(json.loads(json.dumps(nb)))
    for cell in wrong.cells:     # the masked mean divides by the padded length
        if cell.get("id") == "masked_reductions":
            assert "weights.sum(1).clamp(min=1)" in cell.source
            cell.source = cell.source.replace("weights.sum(1).clamp(min=1)", "x.shape[1]")
    return wrong


@pytest.fixture(scope="module")
def graded(root, tmp_path_factory):
    solution = nbformat.read(root / "solutions" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb", as_version=4)
    english = nbformat.read(root / "notebooks" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb", as_version=4)
    chinese = nbformat.read(edition_path(root, ASSIGNMENT, "zh_CN"), as_version=4)
    submissions, out = tmp_path_factory.mktemp("submitted"), tmp_path_factory.mktemp("graded")
    for edition, release in (("en", english), ("zh", chinese)):
        solved = with_answers(release, solution)
        _write(submissions, f"{edition}-solved", solved)
        _write(submissions, f"{edition}-wrong", _wrong(solved))
        _write(submissions, f"{edition}-blank", release)
    grade(root, submissions, ASSIGNMENT, out=out, jobs=2, settings=Settings(notebook_timeout=1800))
    with (out / "grades.csv").open() as handle:
        rows = {r["student"]: r for r in csv.DictReader(handle)}
    return rows, out


@pytest.mark.slow  # a grading run of 04_masking, six submissions
def test_the_same_answers_get_the_same_row_in_either_edition(graded):
    rows, _ = graded
    assert sorted(rows) == ["en-blank", "en-solved", "en-wrong", "zh-blank", "zh-solved", "zh-wrong"]
    ignore = {"student", "seconds"}
    for case in ("solved", "wrong", "blank"):
        en = {k: v for k, v in rows[f"en-{case}"].items() if k not in ignore}
        zh = {k: v for k, v in rows[f"zh-{case}"].items() if k not in ignore}
        assert en == zh, (case, en, zh)
    assert float(rows["zh-solved"]["score"]) == float(rows["zh-solved"]["max_score"]) > 0
    assert rows["zh-wrong"]["failed_tests"] == "test_masked_reductions"
    assert float(rows["zh-blank"]["score"]) == 0


@pytest.mark.slow  # the same grading run
def test_the_feedback_page_is_in_the_language_of_the_submission(graded, root):
    _, out = graded
    po = load_catalogue(root, ASSIGNMENT, "zh_CN")
    usable = translations(po)
    title = next(v for v in usable.values() if v.startswith("# ")).splitlines()[0][2:].strip()
    for case in ("solved", "wrong"):
        zh = (out / "feedback" / f"zh-{case}" / ASSIGNMENT / f"{ASSIGNMENT}.html").read_text()
        en = (out / "feedback" / f"en-{case}" / ASSIGNMENT / f"{ASSIGNMENT}.html").read_text()
        assert 'lang="zh-CN"' in zh and "得分" in zh and "检查内容" in zh, "the page's own words in Chinese"
        assert title in zh, f"the notebook's instructions in Chinese: {title}"
        assert 'lang="en"' in en and "得分" not in en and "What it checks" in en
        assert "What it checks" not in zh
        assert "<summary>Hint" not in en and "<summary>提示" not in zh, "hints are the notebook's, not the feedback's"
    wrong = (out / "feedback" / "zh-wrong" / ASSIGNMENT / f"{ASSIGNMENT}.html").read_text()
    assert "<b>未通过</b>: <code>AssertionError: " in wrong


def test_the_chinese_site_is_made_from_the_edition(root, tmp_path):
    """`course site --lang zh_CN` takes its notebooks from notebooks/zh_CN/: each page's notebook is the
    edition's (Chinese title), without the lecturer's speaker notes, one per assignment."""
    from course_tools.site import write_source

    write_source(root, tmp_path / "source", lang="zh_CN")
    pages = sorted((tmp_path / "source" / "notebooks").glob("*.ipynb"))
    assert [p.stem for p in pages] == list_assignments(root)
    for page in pages:
        nb = nbformat.read(page, as_version=4)
        assert nb.metadata.get("language") == "zh_CN"
        edition = nbformat.read(edition_path(root, page.stem, "zh_CN"), as_version=4)
        assert nb.cells[0].source == edition.cells[0].source
        assert not [c for c in nb.cells if c.metadata.get("slideshow", {}).get("slide_type") == "notes"]
    assert CJK.search(nbformat.read(pages[3], as_version=4).cells[0].source), "04's title is in Chinese"


def test_hints_are_split_from_their_prompt():
    from course_tools.feedback import split_hints

    prompt = ("Write `f`.\n\n<details><summary>Hint 1</summary>\n\nThe idea.\n\n</details>\n\n"
              "<details><summary>Hint 2</summary>\n\nThe step.\n\n</details>\n")
    assert split_hints(prompt) == ("Write `f`.\n", ["The idea.", "The step."])
    assert split_hints("写 `f`。\n\n<details><summary>提示 1</summary>\n\n思路。\n\n</details>\n") == ("写 `f`。\n", ["思路。"])
    assert split_hints("No hints <details><summary>Why</summary>x</details>") == \
        ("No hints <details><summary>Why</summary>x</details>", [])


@pytest.mark.parametrize("lang, label", [(None, "Hint"), ("zh_CN", "提示")])
def test_the_slides_give_the_hints_to_the_lecturer(root, lang, label):
    """In the lecture every prompt's hints become the speaker notes right after it; no slide shows one."""
    from course_tools.feedback import HINT
    from course_tools.i18n import translate_notebook
    from course_tools.slides import hints_to_notes

    nb = nbformat.read(root / "solutions" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb", as_version=4)
    if lang:
        nb = translate_notebook(nb, load_catalogue(root, ASSIGNMENT, lang), lang)[0]
    hints = sum(len(HINT.findall(c.source)) for c in nb.cells if c.cell_type == "markdown")
    assert hints >= 6
    assert hints_to_notes(nb) == hints
    assert not [c.id for c in nb.cells if c.cell_type == "markdown" and "<details><summary>" in c.source]
    notes = [(i, c) for i, c in enumerate(nb.cells) if c.id.endswith("-hints")]
    assert sum(c.source.count(f"**{label} ") for _, c in notes) == hints
    assert all(c.metadata["slideshow"]["slide_type"] == "notes" and nb.cells[i - 1].id == c.id[:-len("-hints")]
               for i, c in notes)
