"""The lecture slides, the course site and JupyterLab, opened in a real browser.

Headless Chromium from Debian (packages chromium and chromium-driver, which `make test`
installs as root through tools/system-deps.sh), driven by Selenium. Every test saves
screenshots under build/screenshots/; the paths are listed at the end of the run.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import nbformat
import pytest

pytestmark = pytest.mark.slow  # a real browser, and notebooks run for the slides and JupyterLab

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
TOKEN = "course-browser-test"


@pytest.fixture(scope="module")
def browser():
    """A headless Chromium that may load local files and localhost only."""
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not Path(p).is_file()]
    if missing:
        pytest.fail(f"browser tests need Debian's chromium and chromium-driver ({missing} not found): "
                    "run `make test` as root, or `sudo apt-get install chromium chromium-driver`")
    # Selenium must not look for drivers on the internet.
    os.environ["SE_OFFLINE"] = "true"
    os.environ["SE_AVOID_STATS"] = "true"
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--no-first-run", "--window-size=1400,900", "--allow-file-access-from-files"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(120)
    yield driver
    driver.quit()


def _wait(driver, script: str, what: str, timeout: float = 90.0):
    """Poll a JavaScript expression until it is truthy; fail naming ``what``."""
    deadline = time.monotonic() + timeout
    value = None
    while time.monotonic() < deadline:
        value = driver.execute_script(f"return ({script});")
        if value:
            return value
        time.sleep(0.25)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what} (last value {value!r})")


def _requested_urls(driver) -> list[str]:
    """Every URL the page asked for since the last call (Chrome's performance log)."""
    urls = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message.get("method") == "Network.requestWillBeSent":
            urls.append(message["params"]["request"]["url"])
    return urls


def _assert_no_console_errors(driver, page: str) -> None:
    """The page logged no error (an uncaught exception, a script that failed, a resource not found)."""
    # MathJax 2 (HTML-CSS output) probes for web fonts with a font at about:blank, which Chromium
    # refuses and logs; that probe is by design, so it is the one message let through
    errors = [e["message"] for e in driver.get_log("browser")
              if e.get("level") == "SEVERE" and "about:blank" not in e["message"]]
    assert not errors, f"{page} logged errors in the console: {errors[:3]}"


def _assert_offline(urls: list[str], allowed: tuple[str, ...]) -> None:
    remote = [u for u in urls if not u.startswith(allowed + ("data:", "blob:", "about:"))]
    assert not remote, f"the page requested remote resources: {remote[:5]}"


# --------------------------------------------------------------------------- slides


@pytest.fixture(scope="module")
def deck(root, tmp_path_factory):
    """`course slides 04_masking`: the notebook executed, its slides written."""
    from course_tools.slides import build_deck

    return build_deck(root, "04_masking", tmp_path_factory.mktemp("slides"), execute_cells=True, progress=False)


def test_slides_open_offline_with_slides_figures_math_and_notes(browser, screenshot, root, deck):
    from course_tools.slides import expected_slides, tests_on_their_own_slides

    nb = nbformat.read(root / "solutions" / "04_masking" / "04_masking.ipynb", as_version=4)
    tests_on_their_own_slides(nb)          # as the lecture lays them out
    assert deck.slides == expected_slides(nb) >= 8 and deck.figures >= 2 and deck.notes >= 1

    _requested_urls(browser)  # drop earlier entries
    browser.get(deck.path.as_uri())
    _wait(browser, "document.body.getAttribute('data-course-slides') === 'ready'", "reveal.js to start")
    assert browser.execute_script("return Reveal.getTotalSlides()") == deck.slides
    assert browser.execute_script("return document.querySelectorAll('.reveal aside.notes').length") == deck.notes
    assert browser.execute_script("return Reveal.hasPlugin('notes')"), "the speaker-notes plugin (key s) is not loaded"
    title = browser.execute_script("return document.querySelector('.reveal .slides section h1').textContent")
    assert "04 · Masking" in title
    screenshot(browser, "title")

    # every figure the notebook drew is on a slide and decoded by the browser
    sizes = browser.execute_script(
        "return [...document.querySelectorAll('.reveal .slides img')].map(i => [i.complete, i.naturalWidth])")
    assert len(sizes) == deck.figures, f"{len(sizes)} images on the slides, {deck.figures} figures in the notebook"
    assert all(done and width > 100 for done, width in sizes), f"figures not rendered: {sizes}"
    browser.execute_script("""
        const img = document.querySelectorAll('.reveal .slides img')[0];
        const section = img.closest('section');
        const where = Reveal.getIndices(section);
        // the figure may sit in a fragment ("try it" cells): show every fragment of its slide
        Reveal.slide(where.h, where.v, section.querySelectorAll('.fragment').length - 1);""")
    _wait(browser, "Reveal.getCurrentSlide().querySelector('img') && "
                   "Reveal.getCurrentSlide().querySelector('img').getBoundingClientRect().width > 200",
          "the figure's slide to show")
    # long slides scroll (the template sets overflow): bring the figure into view, then check it is on screen
    browser.execute_script("Reveal.getCurrentSlide().querySelector('img').scrollIntoView({block: 'center'})")
    _wait(browser, "(() => { const img = Reveal.getCurrentSlide().querySelector('img');"
                   " const r = img.getBoundingClientRect();"
                   " const hidden = [...document.querySelectorAll('.reveal .slides *')].some(e => e.contains(img) &&"
                   " getComputedStyle(e).opacity !== '1');"
                   " return r.top >= 0 && r.bottom <= window.innerHeight + 1 && r.height > 100 && !hidden; })()",
          "the figure to be on screen")
    screenshot(browser, "figure")

    # equations are typeset by the local MathJax
    _wait(browser, "window.MathJax && MathJax.Hub && document.querySelectorAll('.MathJax, .MathJax_Display').length > 0",
          "MathJax to typeset the equations")
    errors = browser.execute_script("return document.querySelectorAll('.MathJax_Error, [data-mjx-error]').length")
    assert errors == 0, "MathJax reported errors"
    message = browser.execute_script(
        "const m = document.getElementById('MathJax_Message'); return m ? m.textContent : ''")
    assert "failed" not in message.lower(), message
    _assert_offline(_requested_urls(browser), ("file://",))
    page = browser.page_source
    assert "HIDDEN TESTS" not in page and "BEGIN SOLUTION" not in page

    # every slide fits the slide area (1100 x 760, shown whole on a 16:9 screen): long code scrolls in its
    # block, and the template scales a tall slide down (to half size at most); no slide is left to scroll
    count = browser.execute_script("return Reveal.getSlides().length")
    verdicts = []
    for number in range(count):
        browser.execute_script("""
            const s = Reveal.getSlides()[arguments[0]];
            s.removeAttribute('data-course-fit');
            const i = Reveal.getIndices(s);
            Reveal.slide(i.h, i.v, s.querySelectorAll('.fragment').length - 1);""", number)
        _wait(browser, "Reveal.getSlides()[arguments[0]].hasAttribute('data-course-fit')".replace(
            "arguments[0]", str(number)), f"slide {number + 1} to be fitted")
        verdicts.append(browser.execute_script(
            "const s = Reveal.getSlides()[arguments[0]]; return [s.getAttribute('data-course-fit'),"
            " s.scrollHeight * Number(s.getAttribute('data-course-scale'))];", number))
    height = browser.execute_script("return Reveal.getConfig().height")
    tall = [(n + 1, v) for n, v in enumerate(verdicts) if v[0] == "scrolls" or v[1] > height + 1]
    assert not tall, f"slides taller than {height} px (number, [fit, height]): {tall}"
    print("slide fits:", verdicts)


# --------------------------------------------------------------------------- feedback


# Draw each character alone on a canvas in the font the heading uses and return its pixels' checksum
# and ink; with no CJK font Chromium draws every Chinese character as the same empty box (tofu).
GLYPHS_JS = """
const font = getComputedStyle(arguments[0]).fontFamily;
return arguments[1].map(ch => {
  const canvas = document.createElement('canvas'); canvas.width = canvas.height = 64;
  const ctx = canvas.getContext('2d'); ctx.fillStyle = '#fff'; ctx.fillRect(0, 0, 64, 64);
  ctx.fillStyle = '#000'; ctx.font = '48px ' + font; ctx.textBaseline = 'top'; ctx.fillText(ch, 4, 4);
  const data = ctx.getImageData(0, 0, 64, 64).data; let sum = 0, ink = 0;
  for (let i = 0; i < data.length; i += 4) { sum = (sum * 31 + data[i]) % 1000000007; if (data[i] < 128) ink++; }
  return [sum, ink];
});"""


def test_chinese_slides_render_chinese_glyphs(browser, screenshot, root, tmp_path):
    """`course slides 04_masking --lang zh_CN`: the deck is in Chinese and Chromium draws its characters
    (Debian's fonts-noto-cjk, which `make test` installs), not tofu boxes: distinct characters give
    distinct, inked glyphs, unlike a code point no font has (U+0378)."""
    from selenium.webdriver.common.by import By

    from course_tools.slides import build_deck

    zh = build_deck(root, "04_masking", tmp_path, execute_cells=False, progress=False, lang="zh_CN")
    text = zh.path.read_text(encoding="utf-8")
    assert '<html lang="zh-CN">' in text and "掩码" in text
    browser.get(zh.path.as_uri())
    _wait(browser, "document.body.getAttribute('data-course-slides') === 'ready'", "reveal.js to start")
    heading = browser.find_element(By.CSS_SELECTOR, ".reveal .slides section h1")
    assert "掩码" in heading.text, heading.text
    (a, ink_a), (b, ink_b), (c, ink_c), (tofu, _) = browser.execute_script(GLYPHS_JS, heading, ["掩", "码", "注", "\u0378"])
    assert ink_a > 50 and ink_b > 50 and ink_c > 50, "a Chinese character drew (almost) nothing"
    assert len({a, b, c}) == 3, "three Chinese characters drew the same glyph: tofu (no CJK font)"
    assert tofu not in (a, b, c), "a Chinese character drew the missing-glyph box"
    screenshot(browser, "zh-title")


def test_feedback_page_names_each_test_and_typesets_offline(browser, screenshot, tmp_path):
    """A feedback page as `course grade` writes it (its template, MathJax beside the pages)."""
    from course_tools.feedback import copy_feedback_mathjax, render_feedback_page

    passing = nbformat.v4.new_code_cell('"""weights: each row sums to one."""\nassert True')
    passing.metadata["nbgrader"] = {"grade": True, "grade_id": "test_weights", "points": 2.0, "score": 2.0}
    failing = nbformat.v4.new_code_cell('"""scale: divides by sqrt(d_k)."""\nassert False')
    failing.metadata["nbgrader"] = {"grade": True, "grade_id": "test_scale", "points": 3.0, "score": 0.0}
    failing.outputs = [nbformat.v4.new_output("error", ename="AssertionError", evalue="expected 0.5, got 1.0",
                                              traceback=["assert hidden_check(x) == 0.5"])]
    text = nbformat.v4.new_markdown_cell("The scale is $\\frac{1}{\\sqrt{d_k}}$:\n\n$$a = \\mathrm{softmax}(q k^T)$$")
    nb = nbformat.v4.new_notebook(cells=[text, passing, failing])
    html = render_feedback_page(nb, "03_attention", score=2, max_score=5)
    page = tmp_path / "feedback" / "alice" / "03_attention" / "03_attention.html"
    page.parent.mkdir(parents=True)
    page.write_text(html, encoding="utf-8")
    copy_feedback_mathjax(tmp_path / "feedback")

    _requested_urls(browser)
    browser.get(page.as_uri())
    _wait(browser, "document.querySelectorAll('.MathJax, .MathJax_Display').length >= 2", "MathJax to typeset")
    rows = browser.execute_script("return [...document.querySelectorAll('table.course-tests tbody tr')]"
                                  ".map(r => r.innerText)")
    assert len(rows) == 2 and "test_weights" in rows[0] and "passed" in rows[0], rows
    assert "test_scale" in rows[1] and "failed" in rows[1] and "expected 0.5, got 1.0" in rows[1], rows
    assert "hidden_check" not in browser.page_source
    _assert_offline(_requested_urls(browser), ("file://",))
    _assert_no_console_errors(browser, "the feedback page")
    screenshot(browser, "feedback")


# --------------------------------------------------------------------------- site


def test_course_site_in_the_browser(browser, screenshot, root, tmp_path, deck):
    from course_tools.build import list_assignments
    from course_tools.site import build_site, overview

    index = build_site(root, tmp_path / "site", progress=False, slides=deck.path.parent)
    html = index.parent
    _requested_urls(browser)
    browser.get(index.as_uri())
    _wait(browser, "document.readyState === 'complete'", "the home page")
    assert "graded PyTorch course" in browser.title
    links = browser.execute_script("return [...document.querySelectorAll('nav a')].map(a => a.textContent.trim())")
    for page in ("The sequence", "Students", "Instructors", "Lecturers", "Reading list"):
        assert page in links, f"no '{page}' in the site's navigation: {links}"
    screenshot(browser, "home")
    _assert_no_console_errors(browser, "the home page")

    browser.get((html / "sequence.html").as_uri())
    _wait(browser, "document.readyState === 'complete'", "the sequence page")
    assignments = [a for a in list_assignments(root) if (root / "notebooks" / a).is_dir()]
    rows = browser.execute_script("return document.querySelectorAll('main table tbody tr').length")
    assert rows == len(assignments), f"{rows} rows for {len(assignments)} notebooks"
    figure = _wait(browser, "[...document.querySelectorAll('main img')].filter(i => i.complete && i.naturalWidth > 300)"
                            ".map(i => i.getAttribute('src'))", "the sequence figure to render")
    assert any("sequence" in src for src in figure), figure
    text = browser.execute_script("return document.querySelector('main').innerText").replace("\u2019", "'")
    for assignment in assignments:
        item = overview(root / "notebooks" / assignment / f"{assignment}.ipynb")
        assert item.title in text and item.short_time in text
        # the first objective, without its markdown emphasis
        assert item.objectives[0].replace("**", "").replace("`", "")[:40] in text, assignment
    screenshot(browser, "sequence")
    _assert_no_console_errors(browser, "the sequence page")

    browser.get((html / "reading_list.html").as_uri())
    _wait(browser, "document.readyState === 'complete'", "the reading list page")
    from course_tools.readings import load

    hrefs = set(browser.execute_script("return [...document.querySelectorAll('main a')].map(a => a.getAttribute('href'))"))
    missing = [p.entry.url for p in load(root) if p.entry.url not in hrefs]
    assert not missing, f"the site's reading list lacks {missing[:3]}"
    _assert_no_console_errors(browser, "the reading list page")
    screenshot(browser, "reading-list")

    browser.get((html / "instructors.html").as_uri())
    _wait(browser, "document.readyState === 'complete'", "the instructors page")
    assert "course grade" in browser.execute_script("return document.querySelector('main').innerText")

    # the lectures published with the site open from the Lecturers page
    from selenium.webdriver.common.by import By

    browser.get((html / "lecturers.html").as_uri())
    _wait(browser, "document.readyState === 'complete'", "the lecturers page")
    browser.find_element(By.CSS_SELECTOR, "main a[href='slides/04_masking.slides.html']").click()
    _wait(browser, "document.body.getAttribute('data-course-slides') === 'ready'", "the published slides to start")
    assert browser.execute_script("return Reveal.getTotalSlides()") == deck.slides

    browser.get((html / "notebooks" / "05_positional_encoding.html").as_uri())
    _wait(browser, "document.querySelectorAll('.MathJax, .MathJax_Display').length > 5", "MathJax on a notebook page")
    text = browser.execute_script("return document.querySelector('main').innerText")
    assert "raise NotImplementedError()" in text, "the site should show the student version"
    assert "BEGIN SOLUTION" not in text and "Speaker notes" not in text
    screenshot(browser, "notebook")
    _assert_no_console_errors(browser, "a notebook page")
    _assert_offline(_requested_urls(browser), ("file://",))


# --------------------------------------------------------------------------- JupyterLab


@pytest.fixture(scope="module")
def course_copy(root, tmp_path_factory) -> Path:
    """A copy of the course whose instructor released 04_masking to its exchange (with nbgrader's CLI)."""
    from course_tools.build import nbgrader
    from course_tools.lab import lab_environment

    copy = tmp_path_factory.mktemp("course")
    for name in ("Makefile", "nbgrader_config.py", "README.md"):
        shutil.copy2(root / name, copy / name)
    for folder in ("solutions", "notebooks"):
        shutil.copytree(root / folder, copy / folder, ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    (copy / "exchange").mkdir(mode=0o777)
    (copy / "grading").mkdir()
    env = lab_environment(copy, instructor=True)
    for args in (["generate_assignment", "04_masking", "--force"], ["release_assignment", "04_masking", "--force"]):
        done = nbgrader(args, copy, timeout=300, env=env)
        assert done.returncode == 0, f"nbgrader {args[0]} failed:\n{done.stdout}\n{done.stderr}"
    assert (copy / "exchange" / "pytorch-nlp-course" / "outbound" / "04_masking" / "04_masking.ipynb").is_file()
    return copy


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Lab:
    """`make lab` (or `make lab-instructor`) running in the background on a free port."""

    def __init__(self, root: Path, target: str, log: Path):
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        args = f"--no-browser --port {self.port} --ServerApp.ip=127.0.0.1 --IdentityProvider.token={TOKEN}"
        # -o: do not (re)install the environment the tests already run in
        command = ["make", "-s", "-o", ".venv/.installed", "-o", ".venv/.installed-dev", target,
                   f"BIN={Path(sys.executable).parent}", f"LAB_ARGS={args}"]
        self.log = log
        self.process = subprocess.Popen(command, cwd=root, stdout=log.open("w"), stderr=subprocess.STDOUT,
                                        start_new_session=True)
        deadline = time.monotonic() + 600   # a cap on polling, not a wait: a loaded machine starts slowly
        while True:
            try:
                self.get("/api/status")
                return
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    pytest.fail(f"`make {target}` did not serve JupyterLab:\n{log.read_text()[-3000:]}")
                time.sleep(0.3)

    def get(self, path: str) -> tuple[int, bytes]:
        sep = "&" if "?" in path else "?"
        try:
            with urllib.request.urlopen(f"{self.url}{path}{sep}token={TOKEN}", timeout=30) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as error:
            return error.code, b""

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)


def _menu(browser, name: str, click: str | None = None) -> list[str]:
    """Open a JupyterLab menu; return its item labels, clicking ``click`` or closing it."""
    from selenium.webdriver.common.by import By

    bar = [e for e in browser.find_elements(By.CSS_SELECTOR, ".lm-MenuBar-item") if e.text.strip() == name]
    assert bar, f"no {name} menu in JupyterLab"
    bar[0].click()
    items = _wait(browser, "[...document.querySelectorAll('.lm-Menu-itemLabel')].map(e => e.textContent)"
                           ".filter(t => t)", f"the {name} menu to open")
    if click is None:
        from selenium.webdriver.common.action_chains import ActionChains
        from selenium.webdriver.common.keys import Keys

        ActionChains(browser).send_keys(Keys.ESCAPE).perform()
        _wait(browser, "document.querySelectorAll('.lm-Menu').length === 0", f"the {name} menu to close")
    else:
        entry = [e for e in browser.find_elements(By.CSS_SELECTOR, ".lm-Menu-item") if e.text.strip() == click]
        assert entry, f"no {click} in the {name} menu: {items}"
        entry[0].click()
    return items


def _open_notebook(browser, url: str, title: str) -> None:
    browser.get(url)
    _wait(browser, "document.querySelectorAll('.jp-Notebook .jp-Cell').length > 10", "the notebook's cells", 120)
    _wait(browser, f"[...document.querySelectorAll('.jp-RenderedMarkdown h1')].some(h => h.textContent.includes({title!r}))",
          "the notebook's title to render")


def test_make_lab_opens_a_student_notebook_without_instructor_tools(browser, screenshot, course_copy, tmp_path):
    lab = Lab(course_copy, "lab", tmp_path / "lab.log")
    try:
        _open_notebook(browser, f"{lab.url}/lab/tree/04_masking/04_masking.ipynb?token={TOKEN}", "04 · Masking")
        _wait(browser, "[...document.querySelectorAll('.jp-Notebook .jp-InputArea-editor')]"
                       ".some(e => e.textContent.includes('raise NotImplementedError()'))",
              "the student's exercise cells")
        config = browser.execute_script("return JSON.parse(document.getElementById('jupyter-config-data').textContent)")
        assert {"@jupyter/nbgrader:formgrader", "@jupyter/nbgrader:create-assignment"} <= set(config["disabledExtensions"])
        items = _menu(browser, "Nbgrader")
        assert "Assignment List" in items and "Formgrader" not in items and "Create assignment" not in items, items
        toolbar = browser.execute_script("return document.querySelector('.jp-NotebookPanel-toolbar').innerText")
        assert "Validate" in toolbar, "nbgrader's Validate button is missing for students"
        screenshot(browser, "student-notebook")
        # the Validate button reads like `course validate`: per test PASS/FAIL, points, message, total
        browser.execute_script("""
            const label = [...document.querySelectorAll('.jp-NotebookPanel-toolbar *')]
                .filter(e => e.textContent.trim() === 'Validate').pop();     // the innermost element
            (label.closest('button, jp-button, .jp-ToolbarButtonComponent') || label).click();""")
        message = _wait(browser, "(() => { const m = document.getElementById('validation-message');"
                                 " return m && m.innerText.includes('points') ? m.innerText : ''; })()",
                        "the Validate dialog's results", 300)
        assert "FAIL  test_masks" in message and re.search(r"0 / \d+ points: (\d+) of \1 tests fail", message), message[:1500]
        assert "NotImplementedError" in message and "Traceback" not in message and len(message) < 3000, message[:1500]
        screenshot(browser, "validate-dialog")
        browser.execute_script("document.querySelector('.jp-Dialog .jp-mod-accept').click()")
        # the server side: no formgrader, and only notebooks/ is served (no solutions)
        assert lab.get("/formgrader")[0] == 404
        assert lab.get("/api/contents/04_masking/04_masking.ipynb")[0] == 200
        assert lab.get("/api/contents/solutions")[0] == 404
        # the assignment the instructor released reaches the student through the exchange
        status, body = lab.get("/assignments?course_id=pytorch-nlp-course")
        listed = json.loads(body)
        assert status == 200 and listed["success"], listed
        assert [(a["assignment_id"], a["status"]) for a in listed["value"]] == [("04_masking", "released")]

        _menu(browser, "Nbgrader", click="Assignment List")
        _wait(browser, "[...document.querySelectorAll('#released_assignments_list .list_item, "
                       "#released_assignments_list li, #released_assignments_list div')]"
                       ".some(e => e.textContent.includes('04_masking'))",
              "04_masking in the student's Assignment List")
        screenshot(browser, "assignment-list")
        log = lab.log.read_text()
        assert "Unwritable directory" not in log and "formgrader nbgrader serverextension" not in log
    finally:
        lab.stop()


def test_make_lab_instructor_has_the_formgrader_on_solutions(browser, screenshot, root, course_copy, tmp_path):
    from course_tools.build import list_assignments

    lab = Lab(course_copy, "lab-instructor", tmp_path / "lab.log")
    try:
        status, body = lab.get("/formgrader/api/assignments")
        assert status == 200, lab.log.read_text()[-2000:]
        assignments = {a["name"]: a for a in json.loads(body)}
        names = sorted(assignments)
        assert names == list_assignments(root), f"the formgrader sees {names}"
        assert assignments["04_masking"]["status"] == "released", assignments["04_masking"]
        _open_notebook(browser, f"{lab.url}/lab/tree/solutions/04_masking/04_masking.ipynb?token={TOKEN}",
                       "04 · Masking")
        items = _menu(browser, "Nbgrader")
        assert "Formgrader" in items and "Create assignment" in items, items
        browser.get(f"{lab.url}/formgrader?token={TOKEN}")
        _wait(browser, "document.querySelectorAll('table tbody tr').length >= " + str(len(names)),
              "the formgrader's assignment table")
        text = browser.execute_script("return document.body.innerText")
        assert "Manage Assignments" in text and all(n in text for n in names)
        screenshot(browser, "formgrader")
        assert "Unwritable directory" not in lab.log.read_text()
    finally:
        lab.stop()
