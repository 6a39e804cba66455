"""The course reading list: every link in a notebook's further reading and on the site, none dropped."""

from __future__ import annotations

import re

import nbformat
import pytest

from course_tools.build import list_assignments
from course_tools.readings import BEGIN, END, LIST, load, out_of_step, parse, site_page


def _links(text: str) -> set[str]:
    """The link targets of a markdown text, as markdown-it (JupyterLab's parser too) reads them."""
    from markdown_it import MarkdownIt

    found = set()
    for token in MarkdownIt("commonmark").parse(text):
        for child in token.children or []:
            if child.type == "link_open":
                found.add(child.attrs["href"])
    return found


def test_the_list_is_the_shared_one_and_every_entry_is_placed(root):
    entries = parse((root / LIST).read_text(encoding="utf-8"))
    assert len(entries) == len({e.url for e in entries}) == 69, "69 distinct links in the list"
    placed = load(root)                         # raises naming an entry placed nowhere or twice
    assert [p.entry.url for p in placed] == [e.url for e in entries]
    assert all(p.label for p in placed)
    titled = {p.entry.url: p.label for p in placed}
    assert titled["http://nlp.seas.harvard.edu/2018/04/03/attention.html"] == "The Annotated Transformer"
    assert titled["https://jalammar.github.io/illustrated-transformer/"] == "The Illustrated Transformer"
    assert titled["https://zhuanlan.zhihu.com/p/115741192"] == "Reformer, an article on zhihu"


def test_every_notebook_lists_its_entries_beside_their_sections(root):
    assert out_of_step(root) == [], "run `course readings`"
    wanted = {url: set() for url in (p.entry.url for p in load(root))}
    for assignment in list_assignments(root):
        for folder in ("solutions", "notebooks"):
            nb = nbformat.read(root / folder / assignment / f"{assignment}.ipynb", as_version=4)
            cell = next(c for c in nb.cells if c.id == "further_reading")
            if BEGIN in cell.source:
                inside = cell.source.split(BEGIN)[1].split(END)[0]
                for url in _links(inside) & set(wanted):
                    wanted[url].add((folder, assignment))
    dropped = [url for url, where in wanted.items() if not any(f == "notebooks" for f, _ in where)]
    assert not dropped, f"links of the reading list in no student notebook: {dropped[:3]}"
    illustrated = {a for f, a in wanted["https://jalammar.github.io/illustrated-transformer/"]}
    assert "06_transformer" in illustrated
    annotated = {a for f, a in wanted["http://nlp.seas.harvard.edu/2018/04/03/attention.html"]}
    assert "06_transformer" in annotated


def test_the_site_page_holds_the_whole_list_and_the_papers(root):
    page = site_page(root, {})
    import html

    missing = [p.entry.url for p in load(root) if f'href="{html.escape(p.entry.url)}"' not in page]
    assert not missing, f"the site's reading list lacks {missing[:3]}"
    assert "## The papers, by notebook" in page and "arXiv:1706.03762" in page


@pytest.mark.parametrize("assignment", list_assignments(__import__("pathlib").Path(__file__).resolve().parents[1]))
def test_no_markdown_link_is_broken(root, assignment):
    """Every markdown link renders as a link (markdown-it, as JupyterLab and the site parse it)."""
    from markdown_it import MarkdownIt

    md = MarkdownIt("commonmark")
    nb = nbformat.read(root / "notebooks" / assignment / f"{assignment}.ipynb", as_version=4)
    for cell in nb.cells:
        if cell.cell_type != "markdown":
            continue
        for token in md.parse(cell.source):
            for child in token.children or []:
                if child.type == "link_open":
                    href = child.attrs.get("href", "")
                    assert href and " " not in href, f"{assignment}/{cell.id}: a link without a target: {href!r}"
                if child.type == "text":
                    assert not re.search(r"\]\(\S", child.content), \
                        f"{assignment}/{cell.id}: a link that does not render: {child.content[:80]!r}"
