"""course i18n (issue 40): the catalogues' life cycle on a throw-away course, --check's report and exit
status, and invariants of the repository's own catalogues (in step with solutions/, code spans, math
and URLs kept, checked glossary terms used), and `course i18n --check`: every notebook fully translated."""

from __future__ import annotations

import csv
import re

import nbformat
import polib
import pytest

from course_tools.build import list_assignments
from course_tools.cli import main
from course_tools.i18n import (catalogue_path, check, coverage, load_catalogue, markdown_cells, merge,
                               translate_notebook)


def _course(tmp_path, root, cells):
    """A one-assignment course (01_tiny) whose solution holds `cells` (id -> markdown) and a code cell."""
    course = tmp_path / "course"
    nb = nbformat.v4.new_notebook()
    for cell_id, text in cells.items():
        cell = nbformat.v4.new_markdown_cell(text)
        cell.id = cell_id
        nb.cells.append(cell)
    code = nbformat.v4.new_code_cell("x = 1")
    code.id = "code-1"
    nb.cells.append(code)
    (course / "solutions" / "01_tiny").mkdir(parents=True)
    nbformat.write(nb, course / "solutions" / "01_tiny" / "01_tiny.ipynb")
    (course / "nbgrader_config.py").write_text((root / "nbgrader_config.py").read_text())
    return course


def _write_solution(course, cells):
    path = course / "solutions" / "01_tiny" / "01_tiny.ipynb"
    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    nb.cells = []
    for cell_id, text in cells.items():
        cell = nbformat.v4.new_markdown_cell(text)
        cell.id = cell_id
        nb.cells.append(cell)
    nb.cells += code
    nbformat.write(nb, path)


def _translate(course, translations):
    path = catalogue_path(course, "01_tiny")
    po = polib.pofile(str(path), wrapwidth=0)
    for entry in po:
        if entry.msgctxt in translations:
            entry.msgstr = translations[entry.msgctxt]
    po.save(str(path))


def test_update_new_changed_and_removed_cells(tmp_path, root, monkeypatch, capsys):
    """update: a new cell is missing; a changed one turns fuzzy with the old English as previous msgid and
    is left English by an edition; a removed one becomes obsolete; --check exits 1 until complete, then 0."""
    course = _course(tmp_path, root, {"intro": "# 01 · Tiny", "body": "Compute `x` with $x = 1$."})
    monkeypatch.chdir(course)
    assert main(["i18n", "update"]) == 0
    po = load_catalogue(course, "01_tiny")
    assert [(e.msgctxt, e.msgid, e.msgstr) for e in po] == [
        ("intro", "# 01 · Tiny", ""), ("body", "Compute `x` with $x = 1$.", "")]
    assert "code-1" not in {e.msgctxt for e in po}, "code cells are not extracted"
    capsys.readouterr()

    assert main(["i18n", "--check"]) == 1
    out = capsys.readouterr().out
    assert "01_tiny: 0 of 2 cells translated, 0 fuzzy, 2 missing" in out
    assert "zh_CN: 1 of 1 notebooks have fuzzy or missing cells" in out

    _translate(course, {"intro": "# 01 · 小例子", "body": "用 $x = 1$ 计算 `x`。"})
    assert main(["i18n", "--check"]) == 0
    out = capsys.readouterr().out
    assert "01_tiny: 2 of 2 cells translated, 0 fuzzy, 0 missing" in out
    assert "zh_CN: 1 of 1 notebooks fully translated, none fuzzy" in out

    # the English changes: body edited, intro removed, a new cell added
    _write_solution(course, {"body": "Compute `x` with $x = 2$.", "new": "## A new section"})
    assert main(["i18n", "--check"]) == 1, "--check counts against the notebook as it is now"
    out = capsys.readouterr().out
    assert "01_tiny: 0 of 2 cells translated, 1 fuzzy, 1 missing" in out
    assert load_catalogue(course, "01_tiny").find("intro", by="msgctxt") is not None, "--check writes nothing"

    assert main(["i18n", "update"]) == 0
    po = load_catalogue(course, "01_tiny")
    body = po.find("body", by="msgctxt")
    assert body.msgid == "Compute `x` with $x = 2$." and "fuzzy" in body.flags
    assert body.previous_msgid == "Compute `x` with $x = 1$."
    assert body.msgstr == "用 $x = 1$ 计算 `x`。", "the old translation is kept for the translator"
    new = po.find("new", by="msgctxt")
    assert new.msgstr == "" and "fuzzy" not in new.flags
    intro = [e for e in po if e.msgctxt == "intro"]
    assert len(intro) == 1 and intro[0].obsolete and intro[0].msgstr == "# 01 · 小例子"
    assert coverage(po, "01_tiny") == check(course, "01_tiny")
    assert (check(course, "01_tiny").translated, check(course, "01_tiny").fuzzy,
            check(course, "01_tiny").missing) == (0, 1, 1)

    # an edition uses neither the fuzzy nor the obsolete translation
    nb = nbformat.read(course / "solutions" / "01_tiny" / "01_tiny.ipynb", as_version=4)
    zh, english = translate_notebook(nb, po)
    assert zh.metadata["language"] == "zh_CN"
    assert [c.source for c in zh.cells] == [c.source for c in nb.cells], "fuzzy and missing cells stay English"
    assert english == ["body", "new"]

    # a second change keeps the English the translation was made from as previous msgid
    _write_solution(course, {"body": "Compute `x` with $x = 3$.", "new": "## A new section"})
    assert main(["i18n", "update"]) == 0
    assert load_catalogue(course, "01_tiny").find("body", by="msgctxt").previous_msgid == \
        "Compute `x` with $x = 1$."

    # the translator updates the translation and removes the fuzzy flag: the edition uses it
    po = load_catalogue(course, "01_tiny")
    body = po.find("body", by="msgctxt")
    body.msgstr, body.previous_msgid = "用 $x = 3$ 计算 `x`。", None
    body.flags.remove("fuzzy")
    po.find("new", by="msgctxt").msgstr = "## 新的一节"
    po.save(str(catalogue_path(course, "01_tiny")))
    capsys.readouterr()
    assert main(["i18n", "--check"]) == 0
    assert "01_tiny: 2 of 2 cells translated, 0 fuzzy, 0 missing" in capsys.readouterr().out
    nb = nbformat.read(course / "solutions" / "01_tiny" / "01_tiny.ipynb", as_version=4)
    zh, english = translate_notebook(nb, load_catalogue(course, "01_tiny"))
    assert english == [] and [c.source for c in zh.cells] == ["用 $x = 3$ 计算 `x`。", "## 新的一节", "x = 1"]


def test_check_reports_each_notebook(tmp_path, root, monkeypatch, capsys):
    """--check prints one line per notebook and exits 1 when any one is incomplete; naming only the
    complete one exits 0."""
    course = _course(tmp_path, root, {"a": "# 01 · Tiny"})
    nb = nbformat.read(course / "solutions" / "01_tiny" / "01_tiny.ipynb", as_version=4)
    (course / "solutions" / "02_small").mkdir()
    nbformat.write(nb, course / "solutions" / "02_small" / "02_small.ipynb")
    monkeypatch.chdir(course)
    assert main(["i18n", "update"]) == 0
    _translate(course, {"a": "# 01 · 小例子"})
    capsys.readouterr()
    assert main(["i18n", "--check"]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines[:2] == ["01_tiny: 1 of 1 cells translated, 0 fuzzy, 0 missing",
                         "02_small: 0 of 1 cells translated, 0 fuzzy, 1 missing"]
    assert main(["i18n", "--check", "01_tiny"]) == 0
    assert main(["i18n", "--check", "02_small"]) == 1
    capsys.readouterr()
    assert main(["i18n", "--check", "03_nowhere"]) == 2
    assert "no such assignment under solutions/: 03_nowhere" in capsys.readouterr().err


# --- the repository's own catalogues -------------------------------------------------------------------

FENCE = re.compile(r"^(```|~~~).*?^\1", re.S | re.M)
CODE = re.compile(r"(`+)(.+?)\1", re.S)
MATH = re.compile(r"\$\$.+?\$\$|(?<![\\$])\$[^$\n]+?\$", re.S)
URL = re.compile(r"https?://[^\s)\]>\"'`]+")


def protected(text: str) -> list[str]:
    """What a translation must carry over unchanged: fenced code blocks, code spans, $math$ and URLs."""
    found = [m.group(0) for m in FENCE.finditer(text)]
    rest = FENCE.sub(" ", text)
    found += [m.group(0) for m in CODE.finditer(rest)]
    rest = CODE.sub(" ", rest)
    found += [m.group(0) for m in MATH.finditer(rest)]
    found += [m.group(0).rstrip(".,;:") for m in URL.finditer(rest)]
    return found


def test_protected_spans_are_found():
    """The read-back's extractor itself: it finds each kind, and a translation that drops one is caught."""
    english = "See `mask[i]` and ``a`b``, $\\sqrt{d_k}$ and $$x^2$$ at https://arxiv.org/abs/1706.03762.\n" \
              "```python\nq @ k.T\n```"
    assert sorted(protected(english)) == sorted(["```python\nq @ k.T\n```", "`mask[i]`", "``a`b``",
                                                 "$\\sqrt{d_k}$", "$$x^2$$", "https://arxiv.org/abs/1706.03762"])
    assert not _lost(english, "见 `mask[i]`、``a`b``、$\\sqrt{d_k}$、$$x^2$$ 与 https://arxiv.org/abs/1706.03762。"
                              "\n```python\nq @ k.T\n```")
    assert _lost(english, "见 `mask`、$\\sqrt{d_k}$ 与 https://arxiv.org/abs/1706.03762。") == \
        ["```python\nq @ k.T\n```", "`mask[i]`", "``a`b``", "$$x^2$$"]


def _lost(english: str, translation: str) -> list[str]:
    return [span for span in protected(english) if span not in translation]


@pytest.fixture(scope="module")
def catalogues(root):
    return {a: load_catalogue(root, a) for a in list_assignments(root)}


def test_coverage_table(root, catalogues):
    """Prints the coverage of each notebook (`pytest -s`); asserts that every catalogue exists and is a
    zh_CN catalogue of this notebook, and that the counts add up to its markdown cells."""
    print()
    total = [0, 0, 0]
    for assignment, po in catalogues.items():
        assert catalogue_path(root, assignment).is_file(), f"no catalogue for {assignment}"
        assert po.metadata.get("Language") == "zh_CN"
        cover = check(root, assignment)
        nb = nbformat.read(root / "solutions" / assignment / f"{assignment}.ipynb", as_version=4)
        assert cover.translated + cover.fuzzy + cover.missing == len(markdown_cells(nb))
        total = [total[0] + cover.translated, total[1] + cover.fuzzy, total[2] + cover.missing]
        print(cover.line())
    print(f"all: {total[0]} of {sum(total)} cells translated, {total[1]} fuzzy, {total[2]} missing")


def test_every_notebook_is_fully_translated(root, monkeypatch, capsys):
    """`course i18n --check` (issue 40's target, kept in CI): every markdown cell of every notebook has a
    translation of its English as it is now, none fuzzy. An English change needs its translation too."""
    monkeypatch.chdir(root)
    code = main(["i18n", "--check"])
    out = capsys.readouterr().out
    assert code == 0, out


def test_catalogues_are_in_step_with_solutions(root, catalogues):
    """`course i18n update` would change no msgid: each catalogue has exactly the markdown cells of its
    solution notebook, in order, with their English as it is now."""
    stale = {}
    for assignment, po in catalogues.items():
        nb = nbformat.read(root / "solutions" / assignment / f"{assignment}.ipynb", as_version=4)
        live = [(e.msgctxt, e.msgid) for e in po if not e.obsolete]
        merged = [(e.msgctxt, e.msgid) for e in merge(po, nb) if not e.obsolete]
        if live != merged:
            changed = sorted({c for c, _ in set(live) ^ set(merged)})
            stale[assignment] = changed
    assert not stale, f"run `course i18n update`: these cells changed in solutions/: {stale}"


def test_translations_keep_code_math_and_urls(catalogues):
    """Every translated entry carries each code span, fenced block, $math$ and URL of its English unchanged
    (a mechanical read-back). Fuzzy entries are left out: their translation is of an older English, and no
    edition uses it until a translator updates it."""
    lost = {}
    for assignment, po in catalogues.items():
        for entry in po:
            if entry.obsolete or not entry.msgstr.strip() or "fuzzy" in entry.flags:
                continue
            missing = _lost(entry.msgid, entry.msgstr)
            if missing:
                lost[f"{assignment} {entry.msgctxt}"] = missing
    assert not lost, f"translations that lost code, math or URLs of their English: {lost}"


def _glossary(root):
    with open(root / "locale" / "zh_CN" / "glossary.csv", newline="", encoding="utf-8") as f:
        return [row for row in csv.DictReader(f) if row["checked"].strip() == "yes"]


TITLE = re.compile(r"(?<!\*)\*(?![*\s])[^*\n]*?[^*\s]\*(?!\*)|\[[^\]\n]*\]\([^)\n]*\)")


# `course readings` writes this block: Chinese articles, each with an English gloss that a Chinese edition drops
READING_LIST = re.compile(r"<!-- reading-list -->.*?<!-- /reading-list -->", re.S)


def _occurs(term: str, english: str) -> bool:
    """The term as a word (or plural: 'mask' in 'masks', not in 'unmasked'), case-insensitively, outside
    code spans, math, URLs and titles (an *italic* paper title, a [linked] article: they stay as published)."""
    prose = english
    for span in protected(english):
        prose = prose.replace(span, " ")
    prose = TITLE.sub(" ", READING_LIST.sub(" ", prose))
    pattern = r"(?<![\w-])" + r"[\s-]+".join(re.escape(w) for w in re.split(r"[\s-]+", term)) + r"(?:s|es)?(?![\w-])"
    return re.search(pattern, prose, re.I) is not None


def test_glossary_helpers(root):
    """The glossary parses (source,target,checked,note; checked is yes or no) and the matcher finds a term
    as a word, plural or hyphen-spelled, not inside another word nor in code."""
    with open(root / "locale" / "zh_CN" / "glossary.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert rows and all(set(r) == {"source", "target", "checked", "note"} for r in rows)
    assert {r["checked"].strip() for r in rows} <= {"yes", "no"}
    assert _occurs("mask", "The masks are boolean.") and _occurs("self-attention", "Self attention is ...")
    assert not _occurs("mask", "the unmasked positions") and not _occurs("mask", "call `mask` here")
    assert not _occurs("loss", "lossless compression")
    assert not _occurs("subword", "* Sennrich (2016). *Rare Words with Subword Units.* arXiv")
    assert _occurs("subword", "* Subword units (Sennrich 2016). *Rare Words.* arXiv")
    assert not _occurs("encoder", "[The encoder explained](https://example.org/a)")
    assert _occurs("encoder", "**The encoder** reads [it](https://example.org/a)")
    assert not _occurs("encoder", "<!-- reading-list -->\n* [编码器](https://example.org/a): the encoder\n"
                                  "<!-- /reading-list -->")


def test_translations_use_the_checked_glossary(root, catalogues):
    """For each glossary row marked checked=yes whose English term occurs in an entry's English, the
    entry's translation (where there is one) contains the Chinese term."""
    rows = _glossary(root)
    assert rows, "the glossary has checked rows"
    misses = []
    for assignment, po in catalogues.items():
        for entry in po:
            if entry.obsolete or not entry.msgstr.strip() or "fuzzy" in entry.flags:
                continue
            for row in rows:
                if _occurs(row["source"], entry.msgid) and row["target"] not in entry.msgstr:
                    misses.append(f"{assignment} {entry.msgctxt}: {row['source']!r} -> {row['target']}")
    assert not misses, "translations without the glossary's term:\n" + "\n".join(misses)
