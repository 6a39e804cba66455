"""``course i18n``: the course in other languages, one gettext catalogue per notebook.

Each notebook's translatable text lives in ``locale/<lang>/<assignment>.po``, one entry per markdown
cell of its solution notebook, keyed by the cell's id (``msgctxt``) and holding the English source
(``msgid``) and its translation (``msgstr``). The files are ordinary gettext catalogues, written and
read with polib, so translators use Poedit or Weblate on them.

``course i18n update`` extracts the entries from ``solutions/`` and merges them into the catalogues:

* a new cell gets an entry with an empty translation (missing);
* a cell whose English changed keeps its translation, marked ``fuzzy``, with the English it was
  made from as ``#| msgid`` (``previous_msgid``), so the translator sees what changed; a fuzzy
  translation is never used in an edition;
* a cell that is gone becomes an obsolete entry (``#~``), kept for the translator, never used.

``course i18n --check`` reports, per notebook, translated / fuzzy / missing cells and fails unless
every cell is translated and none is fuzzy.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import nbformat
import polib

LANGUAGES = {"zh_CN": "简体中文"}
DEFAULT_LANGUAGE = "zh_CN"


def catalogue_path(root: Path, assignment: str, lang: str = DEFAULT_LANGUAGE) -> Path:
    return root / "locale" / lang / f"{assignment}.po"


def _solution(root: Path, assignment: str) -> nbformat.NotebookNode:
    return nbformat.read(root / "solutions" / assignment / f"{assignment}.ipynb", as_version=4)


def markdown_cells(nb: nbformat.NotebookNode) -> list[nbformat.NotebookNode]:
    return [c for c in nb.cells if c.cell_type == "markdown" and c.source.strip()]


def _new_catalogue(assignment: str, lang: str) -> polib.POFile:
    po = polib.POFile(wrapwidth=0)
    po.metadata = {
        "Project-Id-Version": f"course {assignment}",
        "Language": lang,
        "MIME-Version": "1.0",
        "Content-Type": "text/plain; charset=UTF-8",
        "Content-Transfer-Encoding": "8bit",
        "X-Source": f"solutions/{assignment}/{assignment}.ipynb (markdown cells, keyed by cell id)",
    }
    return po


def load_catalogue(root: Path, assignment: str, lang: str = DEFAULT_LANGUAGE) -> polib.POFile:
    path = catalogue_path(root, assignment, lang)
    if not path.is_file():
        return _new_catalogue(assignment, lang)
    po = polib.pofile(str(path), wrapwidth=0)
    return po


@dataclass(frozen=True)
class Coverage:
    assignment: str
    translated: int
    fuzzy: int
    missing: int

    @property
    def complete(self) -> bool:
        return self.fuzzy == 0 and self.missing == 0

    def line(self) -> str:
        cells = self.translated + self.fuzzy + self.missing
        return (f"{self.assignment}: {self.translated} of {cells} cells translated, "
                f"{self.fuzzy} fuzzy, {self.missing} missing")


def merge(po: polib.POFile, nb: nbformat.NotebookNode) -> polib.POFile:
    """Bring the catalogue in step with the notebook's markdown cells (see the module's docstring)."""
    by_id = {e.msgctxt: e for e in po if not e.obsolete}
    old_obsolete = {e.msgctxt: e for e in po if e.obsolete}
    merged = _new_catalogue("", po.metadata.get("Language", DEFAULT_LANGUAGE))
    merged.metadata = dict(po.metadata) or merged.metadata
    seen = set()
    for cell in markdown_cells(nb):
        seen.add(cell.id)
        entry = by_id.get(cell.id) or old_obsolete.get(cell.id)
        if entry is None:
            merged.append(polib.POEntry(msgctxt=cell.id, msgid=cell.source, msgstr=""))
            continue
        new = polib.POEntry(msgctxt=cell.id, msgid=cell.source, msgstr=entry.msgstr,
                            flags=[f for f in entry.flags if f != "fuzzy"], tcomment=entry.tcomment,
                            previous_msgid=entry.previous_msgid if "fuzzy" in entry.flags else None)
        if entry.obsolete and entry.msgstr:
            new.flags.append("fuzzy")
        if entry.msgid != cell.source:
            if entry.msgstr:
                new.flags.append("fuzzy")
                # the English the translation was made from (kept across several changes)
                new.previous_msgid = entry.previous_msgid if "fuzzy" in entry.flags and entry.previous_msgid \
                    else entry.msgid
        elif "fuzzy" in entry.flags:
            new.flags.append("fuzzy")
        merged.append(new)
    for entry in po:
        if entry.msgctxt not in seen and entry.msgstr:
            entry.obsolete = True
            merged.append(entry)
    return merged


def coverage(po: polib.POFile, assignment: str) -> Coverage:
    live = [e for e in po if not e.obsolete]
    fuzzy = sum("fuzzy" in e.flags for e in live)
    missing = sum(not e.msgstr.strip() for e in live if "fuzzy" not in e.flags)
    return Coverage(assignment, len(live) - fuzzy - missing, fuzzy, missing)


def update(root: Path, assignment: str, lang: str = DEFAULT_LANGUAGE) -> Coverage:
    po = merge(load_catalogue(root, assignment, lang), _solution(root, assignment))
    po.metadata["Project-Id-Version"] = f"course {assignment}"
    path = catalogue_path(root, assignment, lang)
    path.parent.mkdir(parents=True, exist_ok=True)
    po.save(str(path))
    return coverage(po, assignment)


def check(root: Path, assignment: str, lang: str = DEFAULT_LANGUAGE) -> Coverage:
    """Coverage against the notebook as it is now (an out-of-date catalogue counts what changed as fuzzy)."""
    return coverage(merge(load_catalogue(root, assignment, lang), _solution(root, assignment)), assignment)


def translations(po: polib.POFile) -> dict[str, str]:
    """Cell id -> translated markdown, for the entries an edition may use (translated, not fuzzy)."""
    return {e.msgctxt: e.msgstr for e in po
            if not e.obsolete and e.msgstr.strip() and "fuzzy" not in e.flags}


def translate_notebook(nb: nbformat.NotebookNode, po: polib.POFile, lang: str = DEFAULT_LANGUAGE,
                       ) -> tuple[nbformat.NotebookNode, list[str]]:
    """A copy of ``nb`` with its markdown cells in ``lang``; also the ids left in English (no usable
    translation, or English that changed since it was translated). Code cells are not touched."""
    out = nbformat.from_dict(nb)
    usable = translations(po)
    english = []
    for cell in out.cells:
        if cell.cell_type != "markdown" or not cell.source.strip():
            continue
        entry = po.find(cell.id, by="msgctxt")
        if cell.id in usable and entry is not None and entry.msgid == cell.source:
            cell.source = usable[cell.id]
        else:
            english.append(cell.id)
    out.metadata["language"] = lang
    return out, english


# ----------------------------------------------------------------------------- editions

EDITIONS_DIR = "zh_CN"   # notebooks/<lang>/<assignment>/: the release in another language


def notebook_language(nb) -> str | None:
    """The edition a (submitted) notebook says it is in: one of LANGUAGES, else None (English).
    Whatever else a submission's metadata holds is ignored."""
    lang = nb.get("metadata", {}).get("language") if hasattr(nb, "get") else None
    return lang if isinstance(lang, str) and lang in LANGUAGES else None


def edition(root: Path, nb: nbformat.NotebookNode, assignment: str, lang: str) -> nbformat.NotebookNode:
    """The release notebook NB in LANG: its markdown cells translated where the catalogue has a usable
    translation of exactly that English, everything else (code, ids, nbgrader metadata) unchanged."""
    path = catalogue_path(root, assignment, lang)
    if not path.is_file():
        out = nbformat.from_dict(nb)
        out.metadata["language"] = lang
        return out
    return translate_notebook(nb, load_catalogue(root, assignment, lang), lang)[0]


def edition_path(root: Path, assignment: str, lang: str) -> Path:
    return root / "notebooks" / lang / assignment / f"{assignment}.ipynb"
