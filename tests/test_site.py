"""The course website (``python tools/build_site.py``) opened page by page in headless Chromium.

The built site (``_site/html/``) is served from 127.0.0.1 and every page is loaded in a real browser that cannot
reach any other host. A page fails on: an HTTP error, an image that does not render (``naturalWidth`` 0), math
that MathJax did not typeset, an internal link to a missing page or anchor, a console error (a failed request
included), or a tqdm progress bar in its text. Screenshots of the landing page and of notebook 03's page go to
``$SIMCLR_SITE_SHOTS`` (default ``.ci-out/``).

Skipped, with the reason, where the site is not built or Chromium, chromedriver or selenium is missing (a plain
``pytest`` on a laptop); CI sets ``SIMCLR_SITE_REQUIRED=1`` so that there a missing piece fails instead.
"""
from __future__ import annotations

import functools
import http.server
import importlib.util
import json
import os
import re
import shutil
import sys
import threading
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SITE = ROOT / "_site" / "html"
SHOTS = Path(os.environ.get("SIMCLR_SITE_SHOTS") or ROOT / ".ci-out")
REQUIRED = os.environ.get("SIMCLR_SITE_REQUIRED", "") == "1"
PROGRESS_BAR = re.compile(r"\d+%\|")  # tqdm's "42%|████" bar

# Stored outputs keep only a progress bar's last line (DEVELOPERS.md): a finished bar ("100%|") may show; a stream
# of updates (its lines below 100 %) or a bar stuck below 100 % (a stored output cut mid-loop) is a defect.
FINISHED_BAR = re.compile(r"\b100%\|")

CHECKED: dict[str, dict] = {}  # page -> what was checked on it, written to site_report.json beside the screenshots

PAGE_STATE_JS = """
const done = arguments[arguments.length - 1];
const imgs = [...document.images];
imgs.forEach(i => { i.loading = 'eager'; });
const loaded = imgs.map(i => i.complete ? null : new Promise(r => { i.onload = r; i.onerror = r; }));
const math = (window.MathJax && MathJax.startup && MathJax.startup.promise) || null;
Promise.all([...loaded, math].filter(Boolean)).then(() => done({
  images: imgs.map(i => [i.currentSrc || i.src, i.naturalWidth]),
  math: document.querySelectorAll('.math').length,
  typeset: document.querySelectorAll('mjx-container').length,
  math_errors: document.querySelectorAll('mjx-merror').length,
  links: [...document.querySelectorAll('a[href]')].map(a => a.href),
  text: document.body.textContent,
}));
"""


def missing() -> str | None:
    """Why the browser test cannot run here, or None."""
    if not (SITE / "index.html").is_file():
        return f"the site is not built ({SITE.relative_to(ROOT)}/index.html missing): python tools/build_site.py"
    if importlib.util.find_spec("selenium") is None:
        return 'selenium is not installed: pip install -e ".[site]"'
    if not (chromium() and shutil.which("chromedriver")):
        return "headless Chromium is not installed: apt-get install chromium chromium-driver"
    return None


def chromium() -> str | None:
    """The Chromium (or Chrome) binary on PATH."""
    return next(filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))), None)


def site_pages() -> list[str]:
    """Every HTML page of the built site, relative to its root (theme assets left out)."""
    pages = [p.relative_to(SITE).as_posix() for p in SITE.rglob("*.html") if "_static" not in p.parts]
    return sorted(pages) or ["index.html"]


@pytest.fixture(scope="module")
def site_url():
    """The built site served over HTTP on 127.0.0.1 (a free port), for the module's tests."""
    why = missing()
    if why:
        (pytest.fail if REQUIRED else pytest.skip)(why)
    handler = functools.partial(QuietHandler, directory=str(SITE))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()
    if CHECKED:
        SHOTS.mkdir(parents=True, exist_ok=True)
        (SHOTS / "site_report.json").write_text(json.dumps(CHECKED, indent=1, sort_keys=True))


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    """Static files without a log line per request."""

    def log_message(self, *args) -> None:
        """Say nothing."""


@pytest.fixture(scope="module")
def browser(site_url):
    """Headless Chromium through chromedriver; every host but 127.0.0.1 is unresolvable (no CDN can hide)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium()
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--hide-scrollbars",
                "--window-size=1280,1400", "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=opts, service=Service(executable_path=shutil.which("chromedriver")))
    driver.set_script_timeout(60)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


@functools.lru_cache(maxsize=None)
def fetch(url: str) -> tuple[int, frozenset[str]]:
    """HTTP status of a site URL and, for an HTML page, the ids its anchors can target."""
    try:
        with urllib.request.urlopen(url, timeout=30) as r:
            body = r.read().decode("utf-8", "replace") if url.endswith((".html", "/")) else ""
            return r.status, frozenset(re.findall(r"""\sid=["']([^"']+)["']""", body))
    except urllib.error.HTTPError as e:
        return e.code, frozenset()


def broken_links(links: list[str], site_url: str) -> list[str]:
    """The internal links among ``links`` whose page is missing or whose #anchor is not on it."""
    bad = []
    for href in sorted(set(links)):
        if not href.startswith(site_url):
            continue
        target, _, anchor = href.partition("#")
        status, ids = fetch(target)
        if status != 200:
            bad.append(f"{href} (HTTP {status})")
        elif anchor and target.endswith((".html", "/")) and urllib.parse.unquote(anchor) not in ids:
            bad.append(f"{href} (no such anchor)")
    return bad


def page_problems(page: str, state: dict, console: list[dict], site_url: str) -> list[str]:
    """Everything wrong with one loaded page."""
    problems = [f"image does not render: {src}" for src, width in state["images"] if width == 0]
    if state["math"] and (state["math_errors"] or state["typeset"] < state["math"]):
        problems.append(f"math: {state['typeset']} of {state['math']} formulas typeset, "
                        f"{state['math_errors']} MathJax errors")
    problems += [f"broken internal link: {b}" for b in broken_links(state["links"], site_url)]
    problems += [f"console {e['level']}: {e['message'][:300]}" for e in console if e["level"] == "SEVERE"]
    bars = [line.strip()[:120] for line in state["text"].splitlines() if PROGRESS_BAR.search(line)]
    unfinished = [b for b in bars if not FINISHED_BAR.search(b)]
    if unfinished:
        problems.append(f"{len(unfinished)} unfinished progress-bar line(s) in the text, first: {unfinished[0]!r}")
    return problems


def load(browser, site_url: str, page: str) -> tuple[dict, list[dict]]:
    """Open a page, wait for its images and MathJax; its state and the console messages it caused."""
    browser.get_log("browser")  # drop what earlier pages left
    browser.get(site_url + page)
    state = browser.execute_async_script(PAGE_STATE_JS)
    return state, browser.get_log("browser")


@pytest.mark.parametrize("page", site_pages())
def test_page_renders_in_chromium(page, site_url, browser):
    status, _ = fetch(site_url + page)
    assert status == 200, f"{page}: HTTP {status}"
    state, console = load(browser, site_url, page)
    problems = page_problems(page, state, console, site_url)
    CHECKED[page] = {"images": len(state["images"]), "formulas": state["math"], "links": len(set(state["links"])),
                     "progress_bar_lines": sum(bool(PROGRESS_BAR.search(t)) for t in state["text"].splitlines()),
                     "problems": problems}
    assert not problems, f"{page} ({len(state['images'])} images):\n  " + "\n  ".join(problems)


def test_screenshots(site_url, browser):
    """The landing page and notebook 03's page (its top, then its first figure) as PNGs in the output folder."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    shots = {"site_landing.png": ("index.html", None),
             "site_notebook03.png": ("notebooks/03_training_loop_lars.html", None),
             "site_notebook03_figure.png": ("notebooks/03_training_loop_lars.html", ".cell_output img")}
    for name, (page, selector) in shots.items():
        load(browser, site_url, page)
        if selector:
            browser.execute_script(f"document.querySelector('{selector}').scrollIntoView({{block: 'center'}})")
        assert browser.save_screenshot(str(SHOTS / name)), name
        assert (SHOTS / name).stat().st_size > 10_000, f"{name} is nearly empty"


def build_site_module():
    """``tools/build_site.py`` imported (it is a script, not a package)."""
    spec = importlib.util.spec_from_file_location("build_site", ROOT / "tools" / "build_site.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("build_site", mod)  # its dataclasses look their module up while it loads
    spec.loader.exec_module(mod)
    return mod


def test_every_notebook_and_module_has_its_page_linked_both_ways(site_url):
    """One page per notebook with its release links; one per core module, linked to its notebooks and back."""
    bs = build_site_module()
    rel, taught = bs.release(), bs.taught_in()
    for num, path in bs.notebooks().items():
        html = (SITE / "notebooks" / f"{path.stem}.html").read_text()
        assert rel.colab(f"notebooks/{path.name}") in html, f"{path.name}: no Colab badge at {rel.tag}"
        assert rel.raw(f"notebooks/{path.name}") in html, f"{path.name}: no download link at {rel.tag}"
        for module in (m for m, nbs in taught.items() if num in nbs):
            assert f'href="../api/{module}.html"' in html, f"{path.name} does not link simclr_lib.{module}"
    for module, nbs in taught.items():
        html = (SITE / "api" / f"{module}.html").read_text()
        for num in nbs:
            assert f'href="../notebooks/{bs.notebooks()[num].stem}.html' in html, f"{module} -> notebook {num}"
    for page in ("glossary.html", "docs/results.html", "docs/teaching.html", "api/index.html"):
        assert (SITE / page).is_file(), page
