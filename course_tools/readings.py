"""The reading list this course accompanies (``readings/reading-list.md``, kept as its author wrote it)
and where each entry goes (``readings/placement.toml``): each notebook's further reading and the site's
*Reading list* page are made from these two files (``course readings``), so no link is dropped.

Each notebook's ``further_reading`` cell holds a block between ``<!-- reading-list -->`` and
``<!-- /reading-list -->`` that ``course readings --write`` rewrites; ``course readings --check``
(in the tests) fails when a block is out of step with the two files.
"""

from __future__ import annotations

import html
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

LIST = Path("readings") / "reading-list.md"
PLACEMENT = Path("readings") / "placement.toml"
BEGIN, END = "<!-- reading-list -->", "<!-- /reading-list -->"
LINK = re.compile(r"\[([^\]]+)\]\((\S+?)\)|(https?://\S+)")


@dataclass
class Entry:
    url: str
    title: str | None              # as the list gives it (Chinese titles stay Chinese)
    heading: str                    # the topic the list files it under
    notes: list[str] = field(default_factory=list)   # the list's own comments after it ("code", ...)


def site_of(url: str) -> str:
    host = re.sub(r"^https?://", "", url).split("/")[0].lower()
    for key, name in (("zhihu", "zhihu"), ("weixin", "WeChat"), ("towardsdatascience", "Towards Data Science"),
                      ("medium", "Medium"), ("jalammar", "Jay Alammar's blog"), ("harvard", "Harvard NLP"),
                      ("cnblogs", "cnblogs"), ("juejin", "juejin"), ("wikipedia", "Wikipedia"),
                      ("googleblog", "the Google AI blog"), ("berkeley", "the BAIR blog"), ("360doc", "360doc"),
                      ("kazemnejad", "Amirhossein Kazemnejad's blog"), ("github.io", host)):
        if key in host:
            return name
    return host


def parse(text: str) -> list[Entry]:
    """Every distinct link of the list, in the list's order, with its heading and the list's notes."""
    entries: dict[str, Entry] = {}
    heading, last = "", None
    body = text.split("\n---", 1)[-1]          # after the list's own preamble
    for raw in body.splitlines():
        line = raw.strip().lstrip("-").strip()
        if not line:
            continue
        if raw.startswith("#"):
            heading, last = raw.lstrip("#").strip(), None
            continue
        links = list(LINK.finditer(line))
        if not links:
            if last is not None:
                last.notes.append(line)
            continue
        for match in links:
            title, url = (match.group(1), match.group(2)) if match.group(2) else (None, match.group(3))
            entry = entries.get(url)
            if entry is None:
                entry = entries[url] = Entry(url, title, heading)
            elif title and not entry.title:
                entry.title = title
            last = entry
        rest = LINK.sub("", line).strip()
        if rest and last is not None:
            last.notes.append(rest)
    return list(entries.values())


@dataclass
class Placed:
    entry: Entry
    places: list[tuple[str, str | None]]     # (notebook, section cell id or None)
    about: str = ""

    label_: str = ""     # placement.toml's `title`: the page's own title, where its address names it
    note_en: str = ""    # placement.toml's `note`: the list's comment on the entry, in English

    @property
    def label(self) -> str:
        """The entry's title as the list gives it, or the page's title, or a label from its heading and site."""
        if self.entry.title or self.label_:
            return self.entry.title or self.label_
        heading = HEADINGS.get(self.entry.heading, self.entry.heading)
        return f"{heading[:1].upper()}{heading[1:]}, an article on {site_of(self.entry.url)}"

    @property
    def labelled_by_site(self) -> bool:
        return not (self.entry.title or self.label_)


HEADINGS = {"训练": "训练 (training)", "trend": "trends"}   # the list's headings, in the labels


def load(root: Path) -> list[Placed]:
    """The list's entries with their places; raises naming any entry placed nowhere, or placed twice."""
    entries = parse((root / LIST).read_text(encoding="utf-8"))
    table = tomllib.loads((root / PLACEMENT).read_text(encoding="utf-8"))["entry"]
    where = {}
    for item in table:
        if item["url"] in where:
            raise ValueError(f"{PLACEMENT} places {item['url']} twice")
        where[item["url"]] = item
    unknown = sorted(set(where) - {e.url for e in entries})
    if unknown:
        raise ValueError(f"{PLACEMENT} places links that are not in the list: {unknown}")
    missing = [e.url for e in entries if e.url not in where or not where[e.url].get("places")]
    if missing:
        raise ValueError(f"{PLACEMENT} places nowhere: {missing}")
    placed = []
    for e in entries:
        places = [(p.split("#")[0], p.split("#")[1] if "#" in p else None) for p in where[e.url]["places"]]
        item = where[e.url]
        if e.notes and not item.get("note"):
            raise ValueError(f"{PLACEMENT}: the list comments on {e.url} ({e.notes}): give the comment in English (note)")
        placed.append(Placed(e, places, item.get("about", ""), item.get("title", ""), item.get("note", "")))
    return placed


def _heading(cell) -> str:
    first = cell.source.strip().splitlines()[0] if cell.source.strip() else ""
    return re.sub(r"\s*\([\d +]+points?\)$", "", first.lstrip("#").strip())


def block(placed: list[Placed], assignment: str, nb) -> str:
    """The further-reading block of one notebook: its entries by the section they go with."""
    cells = {c.id: c for c in nb.cells}
    sections: dict[str | None, list[Placed]] = {}
    for p in placed:
        for notebook, section in p.places:
            if notebook == assignment:
                if section is not None and (section not in cells or cells[section].cell_type != "markdown"):
                    raise ValueError(f"{PLACEMENT}: {p.entry.url} goes with {assignment}#{section}, "
                                     f"which is not a markdown cell of the notebook")
                sections.setdefault(section, []).append(p)
    if not sections:
        return ""
    order = {c.id: i for i, c in enumerate(nb.cells)}
    lines = [BEGIN, "**From the course reading list** (`readings/reading-list.md`, mostly Chinese-language "
                    "articles; links as the list gives them), by the section they go with:", ""]
    for section in sorted(sections, key=lambda s: (s is None, order.get(s, 0))):
        lines.append(f"* with *{_heading(cells[section])}*" if section else "* with the notebook as a whole")
        for p in sections[section]:
            about = f": {p.about}" if p.about else ""
            site = "" if p.labelled_by_site else f" ({site_of(p.entry.url)})"
            comment = " ".join(p.entry.notes)
            english = f" ({p.note_en})" if p.note_en and p.note_en != comment else ""
            said = f"; the list says “{comment}”{english}" if comment else ""
            lines.append(f"  * [{p.label}]({p.entry.url}){about}{said}{site}")
    lines.append(END)
    return "\n".join(lines)


def with_block(source: str, text: str) -> str:
    """``source`` (a further-reading cell) with its reading-list block replaced by ``text``, or appended."""
    if BEGIN in source and END in source:
        head, rest = source.split(BEGIN, 1)
        tail = rest.split(END, 1)[1]
        return (head + text + tail) if text else (head.rstrip() + tail)
    return source.rstrip() + ("\n\n" + text if text else "")


def out_of_step(root: Path) -> list[str]:
    """The solution notebooks whose further-reading block differs from what the two files say."""
    import nbformat

    from course_tools.build import list_assignments

    placed = load(root)
    stale = []
    known = set(list_assignments(root))
    for p in placed:
        for notebook, _ in p.places:
            if notebook not in known:
                raise ValueError(f"{PLACEMENT}: {p.entry.url} goes to {notebook}, which is not an assignment")
    for assignment in sorted(known):
        nb = nbformat.read(root / "solutions" / assignment / f"{assignment}.ipynb", as_version=4)
        cell = next((c for c in nb.cells if c.id == "further_reading"), None)
        if cell is None:
            raise ValueError(f"{assignment} has no further_reading cell")
        if with_block(cell.source, block(placed, assignment, nb)) != cell.source:
            stale.append(assignment)
    return stale


def write(root: Path, wanted: list[str] | None = None) -> list[str]:
    """Rewrite the block of every notebook (of ``wanted``) that is out of step (the solution notebook; run
    `course sync` afterwards for its text twin and the release). Returns the notebooks written."""
    import nbformat

    placed = load(root)
    written = []
    for assignment in out_of_step(root):
        if wanted and assignment not in wanted:
            continue
        path = root / "solutions" / assignment / f"{assignment}.ipynb"
        nb = nbformat.read(path, as_version=4)
        cell = next(c for c in nb.cells if c.id == "further_reading")
        cell.source = with_block(cell.source, block(placed, assignment, nb))
        nbformat.write(nb, path)
        written.append(assignment)
    return written


ARXIV = re.compile(r"\[([^\]]+)\]\((https?://arxiv\.org/abs/[^)\s]+)\)|arXiv:(\d{4}\.\d{4,5})")


def papers(nb) -> list[str]:
    """The papers a notebook's further reading cites by arXiv id (outside the reading-list block)."""
    cell = next((c for c in nb.cells if c.id == "further_reading"), None)
    if cell is None:
        return []
    text = with_block(cell.source, "")
    found = []
    for line in text.splitlines():
        if re.search(r"arXiv:\d{4}\.\d{4,5}|arxiv\.org/abs/", line):
            found.append(line.strip().lstrip("*-").strip())
    return found


def site_page(root: Path, titles: dict[str, str]) -> str:
    """Markdown of the site's *Reading list* page: the whole list in its topics, each entry linked to the
    notebooks that use it, then the notebooks' papers gathered by notebook. ``titles``: assignment ->
    the page title of its notebook on the site (links go to ``notebooks/<assignment>``)."""
    import nbformat

    placed = load(root)
    lines = ["# Reading list", "",
             "The course accompanies this reading list (mostly Chinese-language articles, grouped by topic as its "
             "author grouped them; links as the list gives them, some may have moved). Each entry says which "
             "notebook uses it; each notebook's *Further reading* lists the entries beside the section they go with.", ""]
    heading = None
    for p in placed:
        if p.entry.heading != heading:
            heading = p.entry.heading
            lines += ["", f"## {HEADINGS.get(heading, heading)}", ""]
        used = ", ".join(dict.fromkeys(f"[{titles.get(n, n)}](notebooks/{n})" for n, _ in p.places))
        about = f": {p.about}" if p.about else ""
        # an HTML anchor, not a markdown link: MyST escapes the "&" of a markdown link's address twice
        # (the WeChat links), which breaks it; a raw anchor is written as given
        anchor = f'<a href="{html.escape(p.entry.url)}">{html.escape(p.label)}</a>'
        lines.append(f"* {anchor}{about}. Used in {used}.")
    lines += ["", "## The papers, by notebook", ""]
    from course_tools.build import list_assignments

    for assignment in list_assignments(root):
        path = root / "solutions" / assignment / f"{assignment}.ipynb"
        cited = papers(nbformat.read(path, as_version=4))
        if cited:
            lines += ["", f"### [{titles.get(assignment, assignment)}](notebooks/{assignment})", ""]
            lines += [f"* {c}" for c in cited]
    return "\n".join(lines) + "\n"
