"""``course site``: the course as a static web site, built with Jupyter Book.

The site is made of the student notebooks (``notebooks/``, as released: no solutions, no
outputs) and pages generated from the course itself, so that they cannot drift from it:

* ``sequence``: every notebook with its learning objectives, prerequisites, estimated time and
  points, read from the notebook's title cell and nbgrader metadata, and a figure of the
  course's time and points;
* ``students``, ``instructors`` (how to grade), ``lecturers``: the README's sections of
  those names.

MathJax is copied into the site, so it works offline like the slides.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
from nbgrader.utils import is_grade

from course_tools.build import list_assignments
from course_tools.slides import mathjax_source, notebook_title

README_PAGES = {"students": "Students", "instructors": "Instructors", "lecturers": "Lecturers"}
# Relative to _static/; MathJax itself goes to the site root through html_extra_path, because
# Jupyter Book would add every .js file under _static/ to every page.
MATHJAX = "../mathjax/MathJax.js?config=TeX-AMS-MML_HTMLorMML-full"
FIGURE = "sequence.png"


@dataclass
class Overview:
    """What the title cell and the nbgrader metadata say about one notebook."""

    assignment: str
    title: str
    objectives: list[str] = field(default_factory=list)
    prerequisites: str = ""
    estimated_time: str = ""
    hours: float | None = None
    points: float = 0.0
    graded_cells: int = 0

    @property
    def short_time(self) -> str:
        """The first sentence of the estimated time ('1.5 hours')."""
        return re.split(r"\.\s", self.estimated_time)[0].rstrip(".")


def _paragraph(text: str, label: str) -> str:
    found = re.search(rf"\*\*{label}\.\*\*\s*(.*?)(?:\n\s*\n|\n\*\*|\Z)", text, re.S)
    return " ".join(found.group(1).split()) if found else ""


def overview(path: Path) -> Overview:
    """Read one notebook's title, objectives, prerequisites, estimated time and points."""
    nb = nbformat.read(path, as_version=4)
    head = next((c.source for c in nb.cells if c.cell_type == "markdown"), "")
    title = notebook_title(nb, path.stem)
    objectives, current = [], None
    block = re.search(r"\*\*Learning objectives\.\*\*.*?\n(.*?)(?:\n\s*\n|\n\*\*|\Z)", head, re.S)
    for line in (block.group(1).splitlines() if block else []):
        item = re.match(r"\s*\d+\.\s+(.*)", line)
        if item:
            current = item.group(1).strip()
            objectives.append(current)
        elif current is not None and line.strip():
            objectives[-1] = f"{objectives[-1]} {line.strip()}"
    estimated = _paragraph(head, "Estimated time")
    hours = re.match(r"([\d.]+)\s*hour", estimated)
    graded = [c for c in nb.cells if is_grade(c)]
    return Overview(
        assignment=path.parent.name, title=title, objectives=objectives,
        prerequisites=_paragraph(head, "Prerequisites"), estimated_time=estimated,
        hours=float(hours.group(1)) if hours else None,
        points=sum(float(c.metadata.nbgrader.get("points", 0)) for c in graded),
        graded_cells=len(graded),
    )


def readme_sections(readme: Path) -> dict[str, str]:
    """Split the README into its ``## `` sections: {heading: body}."""
    sections, heading, lines = {}, "", []
    for line in readme.read_text(encoding="utf-8").splitlines():
        if line.startswith("## "):
            sections[heading] = "\n".join(lines).strip()
            heading, lines = line[3:].strip(), []
        else:
            lines.append(line)
    sections[heading] = "\n".join(lines).strip()
    return sections


def _figure(items: list[Overview], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [o.assignment for o in items][::-1]
    hours = [o.hours or 0.0 for o in items][::-1]
    points = [o.points for o in items][::-1]
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 0.38 * len(items) + 1.2), sharey=True)
    left.barh(labels, hours, color="#1f77b4")
    left.set_xlabel("estimated study time (hours)")
    right.barh(labels, points, color="#ff7f0e")
    right.set_xlabel("graded points")
    for ax, values in ((left, hours), (right, points)):
        for y, v in enumerate(values):
            ax.text(v, y, f" {v:g}", va="center", fontsize=8)
        ax.spines[["top", "right"]].set_visible(False)
    fig.suptitle(f"The course: {sum(hours):g} hours, {sum(points):g} points")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def sequence_page(items: list[Overview]) -> str:
    """Markdown of the sequence page: a table, a figure and one section per notebook."""
    rows = "\n".join(
        f"| {o.assignment[:2]} | [{o.title}](notebooks/{o.assignment}) | {o.short_time} "
        f"| {o.graded_cells} | {o.points:g} |"
        for o in items
    )
    parts = [
        "# The sequence\n",
        "Take the notebooks in order: each builds on the ones before it. Each one is graded by "
        "hidden tests beside the visible tests you run yourself.\n",
        "| # | notebook | estimated time | graded cells | points |\n|---|---|---|---|---|\n" + rows + "\n",
        f"```{{figure}} {FIGURE}\n:name: sequence-figure\n:alt: study time and points per notebook\n\n"
        "Estimated study time and graded points of each notebook.\n```\n",
    ]
    for o in items:
        objectives = "\n".join(f"{n}. {text}" for n, text in enumerate(o.objectives, 1))
        parts.append(
            f"## {o.title}\n\n**Learning objectives.** After this notebook you can\n{objectives}\n\n"
            f"**Prerequisites.** {o.prerequisites}\n\n**Estimated time.** {o.estimated_time}\n\n"
            f"**Graded.** {o.graded_cells} test cells, {o.points:g} points. "
            f"[Open the notebook](notebooks/{o.assignment}).\n"
        )
    return "\n".join(parts)


def _slides_section(slides: Path, dest: Path) -> str:
    """Copy the decks of ``slides`` (``course slides`` output) into the site; return markdown linking them."""
    decks = sorted(slides.glob("*.slides.html"))
    if not decks:
        raise FileNotFoundError(f"no *.slides.html in {slides}: run `course slides --all` first")
    shutil.copytree(slides, dest / "_extra" / "slides",
                    ignore=shutil.ignore_patterns("index.html"), dirs_exist_ok=True)
    links = "\n".join(f'<li><a href="slides/{d.name}">{d.name.removesuffix(".slides.html")}</a></li>' for d in decks)
    return ("\n## The lectures\n\nThe slides, built with `course slides` (they open in the browser; press `s` "
            f"for speaker notes):\n\n<ul>\n{links}\n</ul>\n")


SITE_FIXES = '''"""Sphinx extension of the course site: every page loads each script once, and a link's
`&` is escaped once (MyST hands Sphinx some addresses with `&amp;` already in them, which the page then
showed as `&amp;amp;`: the WeChat articles of the reading list)."""

from docutils import nodes


def _links_escaped_once(app, doctree, docname):
    for ref in doctree.findall(nodes.reference):
        uri = ref.get("refuri")
        if uri and "&amp;" in uri:
            ref["refuri"] = uri.replace("&amp;", "&")


def _one_of_each(app, pagename, templatename, context, doctree):
    scripts = context.get("script_files")
    if not scripts:
        return
    seen, kept = set(), []
    for script in scripts:
        # the same file or the same inline body, whatever priority each copy was added with
        key = (getattr(script, "filename", str(script)) or "",       # None and "" both mean inline
               tuple(sorted((getattr(script, "attributes", None) or {}).items())))
        if key not in seen:
            seen.add(key)
            kept.append(script)
    scripts[:] = kept


def setup(app):
    app.connect("html-page-context", _one_of_each, priority=900)
    app.connect("doctree-resolved", _links_escaped_once)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
'''


def write_source(root: Path, dest: Path, slides: Path | None = None, lang: str | None = None) -> list[Overview]:
    """Write the Jupyter Book source of the course site into ``dest``; return the notebooks' overviews.

    With ``slides`` (a ``course slides`` output folder), the decks are published with the site
    and linked from the Lecturers page.
    """

    if dest.exists():
        shutil.rmtree(dest)
    (dest / "notebooks").mkdir(parents=True)
    notebooks = root / "notebooks" / lang if lang else root / "notebooks"   # notebooks/zh_CN: the edition
    assignments = [a for a in list_assignments(root) if (notebooks / a / f"{a}.ipynb").is_file()]
    if not assignments:
        raise FileNotFoundError(f"no student notebooks under {notebooks}: run `course build` first")
    items = []
    for assignment in assignments:
        source = notebooks / assignment / f"{assignment}.ipynb"
        nb = nbformat.read(source, as_version=4)
        # Speaker notes are for the lecture (course slides), not for the students' pages.
        nb.cells = [c for c in nb.cells if c.get("metadata", {}).get("slideshow", {}).get("slide_type") != "notes"]
        nbformat.write(nb, dest / "notebooks" / f"{assignment}.ipynb")
        items.append(overview(source))

    from course_tools.readings import LIST, site_page

    reading_list = (root / LIST).is_file()        # a course without readings/ has no such page
    sections = readme_sections(root / "README.md")
    title = sections[""].splitlines()[0].lstrip("# ").strip()
    intro = sections[""].split("\n", 1)[1].strip()
    (dest / "intro.md").write_text(
        f"# {title}\n\n{intro}\n\n## Two commands\n\n{sections.get('Two commands', '')}\n\n"
        "## On this site\n\n"
        "* [The sequence](sequence): every notebook's objectives, prerequisites, time and points;\n"
        "* [Students](students): how to work through a notebook and check it;\n"
        "* [Instructors](instructors): how to grade a folder of submissions;\n"
        "* [Lecturers](lecturers): the notebooks as slides;\n"
        + ("* [Reading list](reading_list): the articles the course accompanies, each with its notebooks;\n"
           if reading_list else "") +
        "* the notebooks themselves, as students get them, in the menu on the left.\n",
        encoding="utf-8",
    )
    for page, heading in README_PAGES.items():
        body = sections.get(heading)
        if body is None:
            raise ValueError(f"README.md has no '## {heading}' section for the site's {page} page")
        extra = _slides_section(slides, dest) if page == "lecturers" and slides is not None else ""
        (dest / f"{page}.md").write_text(f"# {heading}\n\n{body}\n{extra}", encoding="utf-8")
    (dest / "sequence.md").write_text(sequence_page(items), encoding="utf-8")
    if reading_list:
        titles = {i.assignment: i.title for i in items}
        (dest / "reading_list.md").write_text(site_page(root, titles), encoding="utf-8")
    _figure(items, dest / FIGURE)
    shutil.copytree(mathjax_source(), dest / "_extra" / "mathjax")
    (dest / "_ext").mkdir()
    (dest / "_ext" / "course_site_fixes.py").write_text(SITE_FIXES, encoding="utf-8")

    toc = {
        "format": "jb-book",
        "root": "intro",
        "parts": [
            {"caption": "The course", "chapters": [{"file": "sequence"}] + [{"file": p} for p in README_PAGES]
             + ([{"file": "reading_list"}] if reading_list else [])},
            {"caption": "Notebooks", "chapters": [{"file": f"notebooks/{a}"} for a in assignments]},
        ],
    }
    config = {
        "title": title,
        "author": "the course authors",
        "copyright": "2026",
        "only_build_toc_files": True,
        "exclude_patterns": ["_build", "**.ipynb_checkpoints"],
        "execute": {"execute_notebooks": "off"},
        "parse": {"myst_enable_extensions": ["colon_fence", "dollarmath", "substitution", "tasklist"]},
        "html": {"use_repository_button": False, "use_issues_button": False,
                 "use_edit_page_button": False, "home_page_in_navbar": True},
        "launch_buttons": {"thebe": False},
        # sphinx-thebe adds its configuration script twice (THEBE_JS_URL declared twice: a console
        # error on every page); course_site_fixes keeps one copy of each script
        "sphinx": {"local_extensions": {"course_site_fixes": "_ext"}, "config": {
            "html_extra_path": ["_extra"],
            "mathjax_path": MATHJAX,
            "mathjax2_config": {"tex2jax": {"inlineMath": [["\\(", "\\)"]],
                                            "displayMath": [["\\[", "\\]"]],
                                            "processEscapes": True,
                                            # MyST marks the page body as ignored and math spans as processed.
                                            "ignoreClass": "tex2jax_ignore|mathjax_ignore",
                                            "processClass": "tex2jax_process|mathjax_process|math|output_area"},
                                 "messageStyle": "none",  # no "Loading [MathJax]..." box
                                 # The MathJax wheel carries only the STIX-Web fonts.
                                 "HTML-CSS": {"availableFonts": [], "preferredFont": None,
                                              "webFont": "STIX-Web", "imageFont": None},
                                 "SVG": {"font": "STIX-Web"}},
            "html_show_sourcelink": False,
            # the theme's script reads the page's mode: without one it logs "Got invalid theme mode"
            "html_context": {"default_mode": "light"},
            "suppress_warnings": ["myst.header", "mystnb.unknown_mime_type"],
        }},
    }
    # JSON is valid YAML: no YAML writer needed.
    (dest / "_toc.yml").write_text(json.dumps(toc, indent=2), encoding="utf-8")
    (dest / "_config.yml").write_text(json.dumps(config, indent=2), encoding="utf-8")
    return items


def build_site(root: Path, out: Path, progress: bool = True, slides: Path | None = None,
               lang: str | None = None) -> Path:
    """Build the site into ``out`` (source in ``out/source``); return the path of its index.html. With
    ``lang`` (zh_CN) its notebooks are that edition's (notebooks/zh_CN/); the README's pages stay English."""
    out = out.resolve()
    source = out / "source"
    write_source(root, source, slides, lang)
    jupyter_book = Path(sys.executable).parent / "jupyter-book"
    command = [str(jupyter_book) if jupyter_book.exists() else "jupyter-book", "build", str(source),
               "--path-output", str(out), "--builder", "html", "--all",
               "-W", "--keep-going"]  # a warning (broken link, bad markdown) fails the build
    if progress:
        print("running", " ".join(command), flush=True)
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"jupyter-book failed (exit {done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    index = out / "_build" / "html" / "index.html"
    if not index.is_file():
        raise RuntimeError(f"jupyter-book wrote no {index}:\n{done.stdout[-2000:]}")
    return index
