"""Build the course website: ``python tools/build_site.py`` writes it to ``_site/html/`` (git-ignored).

Sphinx + myst-nb (why: ``docs/site.md``) renders the notebooks with their STORED outputs (never executed here),
``docs/*.md`` (results, lesson plan, differences, GPU plan), a glossary taken from notebook 00, a landing page built
from ``docs/teaching.md`` and README's notebook table, and one API page per core module from its docstrings.

Everything Sphinx reads is staged first in ``_site/src/`` (copies, never the sources themselves): each notebook
gets a header with its Colab badge and download links at the release (``REPO_URL`` + ``"v" + __version__``) and
links to the modules it teaches; links to repository files that are not pages point at the release on GitHub.
Math is rendered by a MathJax copy served with the site (no CDN), so the site works offline.
"""
from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CORE_MODULES = ("config", "augment", "models", "loss", "optim", "train", "evaluate", "embed")
TAUGHT = re.compile(r"Taught in notebooks? (\d\d)")
LINK = re.compile(r"(\]\()([^)\s]+)(\))")  # a Markdown link or image target
COLAB = re.compile(r"https://colab\.research\.google\.com/github/[^)\s\"']+")
COLAB_BADGE_URL = "https://colab.research.google.com/assets/colab-badge.svg"
BADGE_SVG = ('<svg xmlns="http://www.w3.org/2000/svg" width="117" height="20" role="img" aria-label="Open in '
             'Colab"><rect width="117" height="20" rx="3" fill="#555"/><rect x="38" width="79" height="20" rx="3" '
             'fill="#f9ab00"/><g fill="#fff" font-family="Verdana,sans-serif" font-size="11"><text x="6" y="14">'
             'Open</text><text x="44" y="14" fill="#222">in Colab</text></g></svg>\n')



@dataclass(frozen=True)
class Release:
    """Where the release's files live: ``repo_url`` (the one REPO_URL constant) at git tag ``tag``."""

    repo_url: str
    tag: str

    def raw(self, path: str) -> str:
        """Download URL of a repository file at the release."""
        return f"{self.repo_url}/raw/{self.tag}/{path}"

    def blob(self, path: str) -> str:
        """GitHub page of a repository file or folder at the release."""
        return f"{self.repo_url}/blob/{self.tag}/{path}"

    def colab(self, path: str) -> str:
        """Colab URL that opens a repository notebook at the release."""
        return "https://colab.research.google.com/github/" + self.repo_url.split("github.com/", 1)[1] + \
            f"/blob/{self.tag}/{path}"


@dataclass(frozen=True)
class LessonClass:
    """One class of the lesson plan in ``docs/teaching.md``."""

    title: str
    notebooks: tuple[str, ...]  # two-digit numbers
    in_class: str
    homework: str
    minutes: int | None


def release() -> Release:
    """REPO_URL from wherever ``grep -rn '^REPO_URL' simclr_lib`` finds it, and the tag ``v<__version__>``."""
    for path in sorted((ROOT / "simclr_lib").rglob("*.py")):
        m = re.search(r"^REPO_URL\s*(?::\s*str\s*)?=\s*[\"']([^\"']+)[\"']", path.read_text(), re.M)
        if m:
            break
    else:
        raise SystemExit("build_site: no REPO_URL = '...' line in simclr_lib")
    version = re.search(r"^__version__\s*=\s*[\"']([^\"']+)", (ROOT / "simclr_lib/__init__.py").read_text(), re.M)
    return Release(m.group(1).rstrip("/"), "v" + version.group(1))


def notebooks() -> dict[str, Path]:
    """The series' notebooks by their two-digit number: {"00": notebooks/00_why_simclr.ipynb, ...}."""
    return {p.name[:2]: p for p in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))}


def taught_in() -> dict[str, list[str]]:
    """Core module -> the notebooks its docstrings say it is taught in ("Taught in notebook NN")."""
    return {m: sorted(set(TAUGHT.findall((ROOT / "simclr_lib" / f"{m}.py").read_text()))) for m in CORE_MODULES}


def markdown_table(lines: list[str]) -> list[list[str]]:
    """The rows (header first, separator dropped) of the first Markdown table in ``lines``."""
    rows = []
    for line in lines:
        if line.startswith("|"):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if not all(set(c) <= set("-: ") for c in cells):
                rows.append(cells)
        elif rows:
            break
    return rows


def lesson_plan(text: str) -> tuple[str, list[LessonClass]]:
    """The lesson plan's heading and classes from ``docs/teaching.md`` (minutes from a column or the heading)."""
    m = re.search(r"^## (Lesson plan.*)$", text, re.M)
    if not m:
        return "", []
    rows = markdown_table(text[m.end():].splitlines()[1:]) or [[]]
    head, body = [h.lower() for h in rows[0]], rows[1:]
    names = {"notebook": ("notebook",), "in class": ("in class",), "homework": ("homework",),
             "min": ("min", "time", "length", "duration")}
    col = {k: next((i for i, h in enumerate(head) if any(w in h for w in words)), None) for k, words in names.items()}
    per_class = re.search(r"(\d+)[- ]minute", m.group(1))

    def cell(row: list[str], key: str) -> str:
        return row[col[key]] if col[key] is not None and col[key] < len(row) else ""

    def minutes(row: list[str]) -> int | None:
        found = re.search(r"\d+", cell(row, "min")) or per_class
        return int(found.group(1) if found is per_class else found.group(0)) if found else None

    return m.group(1), [LessonClass(r[0], tuple(re.findall(r"\b\d\d\b", cell(r, "notebook"))), cell(r, "in class"),
                                    cell(r, "homework"), minutes(r)) for r in body]


def slug(heading: str) -> str:
    """The anchor MyST gives a heading (GitHub's rule)."""
    from myst_parser.mdit_to_docutils.base import default_slugify

    return default_slugify(heading)


def rewrite_links(text: str, where: str, pages: set[str], rel: Release) -> str:
    """Point each relative link of a staged file (repository path ``where``) that is not a page of the site (or a
    file staged beside it) at the release's file on GitHub."""
    def fix(m: re.Match) -> str:
        target = m.group(2)
        if re.match(r"[a-z]+:|#|/", target):
            return m.group(0)
        path = target.split("#", 1)[0]
        repo_path = (Path(where).parent / path).as_posix()
        repo_path = str(Path("/" + repo_path).resolve())[1:]  # collapse ../
        if repo_path in pages or not (ROOT / repo_path).exists():
            return m.group(0)
        return m.group(1) + rel.blob(repo_path) + m.group(3)

    return LINK.sub(fix, text)


def notebook_header(num: str, path: Path, rel: Release, modules: dict[str, list[str]], plan: str) -> str:
    """Markdown for the cell put under a notebook's title: downloads at the release, the modules it teaches."""
    repo_path, student = f"notebooks/{path.name}", f"notebooks/student/{path.name}"
    links = [f"[this notebook (.ipynb)]({rel.raw(repo_path)})"]
    if (ROOT / student).is_file():
        links += [f"[student edition (.ipynb)]({rel.raw(student)})",
                  f"[student edition in Colab]({rel.colab(student)})"]
    taught = [f"[`simclr_lib.{m}`](../api/{m}.md)" for m, nbs in modules.items() if num in nbs]
    lines = [f"**Release {rel.tag}:** " + " · ".join(links) + f" · [lesson plan](../docs/teaching.md#{plan})"]
    if taught:
        lines.append("**Library code taught here:** " + ", ".join(taught))
    return "\n\n".join(lines)


def terminal_text(text: str) -> str:
    """Stream text as a terminal (and Jupyter) shows it: each carriage return overwrites its line from the start."""
    def overwrite(line: str) -> str:
        shown = ""
        for part in line.split("\r"):
            shown = part + shown[len(part):]
        return shown.rstrip()

    shown = [(line, overwrite(line)) for line in text.split("\n")]
    return "\n".join(after for line, after in shown if after or "\r" not in line)  # a cleared bar leaves no line


def merge_streams(outputs: list[dict]) -> list[dict]:
    """Consecutive stream outputs of one name joined into one, carriage returns applied (a tqdm bar that wrote 500
    updates shows its last state, as in Jupyter; myst-nb's own merge would show all 500 lines)."""
    merged: list[dict] = []
    for out in outputs:
        if out["output_type"] == "stream" and merged and merged[-1].get("name") == out["name"] \
                and merged[-1]["output_type"] == "stream":
            merged[-1] = {**merged[-1], "text": merged[-1]["text"] + "".join(out["text"])}
        else:
            merged.append({**out, "text": "".join(out["text"])} if out["output_type"] == "stream" else out)
    for out in merged:
        if out["output_type"] == "stream":
            out["text"] = terminal_text(out["text"])
    return [o for o in merged if o["output_type"] != "stream" or o["text"].strip()]


def stage_notebook(num: str, path: Path, dest: Path, ctx: dict) -> None:
    """Copy a notebook with its stored outputs; release badge, header and link rewriting on the copy."""
    nb = json.loads(path.read_text())
    where, rel = f"notebooks/{path.name}", ctx["release"]
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            cell["outputs"] = merge_streams(cell["outputs"])
        if cell["cell_type"] == "markdown":
            src = "".join(cell["source"])
            src = COLAB.sub(rel.colab(where), src).replace(COLAB_BADGE_URL, "../images/colab-badge.svg")
            cell["source"] = rewrite_links(src, where, ctx["pages"], rel)
    header = notebook_header(num, path, rel, ctx["modules"], ctx["plan"])
    first = "".join(nb["cells"][0]["source"])
    badge = re.search(r"^.*colab\.research\.google\.com.*$", first, re.M) or re.search(r"^# .*$", first, re.M)
    if "colab.research.google.com" not in badge.group(0):  # a notebook without a badge gets one
        header = f"[![Open In Colab](../images/colab-badge.svg)]({rel.colab(where)})\n\n" + header
    nb["cells"][0]["source"] = f"{first[:badge.end()]}\n\n{header}\n{first[badge.end():]}"
    dest.write_text(json.dumps(nb, indent=1))


def notebook_titles() -> dict[str, str]:
    """Each notebook's title: the text of its first ``#`` heading."""
    out = {}
    for num, path in notebooks().items():
        first = "".join(json.loads(path.read_text())["cells"][0]["source"])
        m = re.search(r"^# (.+)$", first, re.M)
        out[num] = re.sub(rf"^{num}\s*\W\s*", "", m.group(1).strip()) if m else path.stem  # no "03 · " twice
    return out


def readme_topics() -> dict[str, str]:
    """The "what you learn" column of README's notebook table, by notebook number."""
    lines = (ROOT / "README.md").read_text().splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith("| # | notebook")), None)
    if start is None:
        return {}
    rows = markdown_table(lines[start:])
    col = next((i for i, h in enumerate(rows[0]) if "learn" in h), None)
    return {r[0]: r[col] for r in rows[1:] if col is not None and re.fullmatch(r"\d\d", r[0])}


def landing_page(rel: Release) -> str:
    """``index.md``: what the course teaches, its classes with their minutes, how to run it, the other pages."""
    titles, topics = notebook_titles(), readme_topics()
    heading, classes = lesson_plan((ROOT / "docs/teaching.md").read_text())
    intro = (ROOT / "README.md").read_text().split("\n\n")[1].replace("\n", " ")
    table = ["| # | notebook | what you learn |", "|---|---|---|"]
    table += [f"| {n} | [{titles[n]}](notebooks/{p.name}) | {topics.get(n, '')} |" for n, p in notebooks().items()]
    parts = [f"# SimCLR, step by step\n\n{intro}\n\nThis site is the series as released in **{rel.tag}**, every "
             "notebook shown with the outputs stored in it (nothing is re-run to build the site).",
             "## What the course teaches\n\n" + "\n".join(table),
             f"## The classes\n\n{heading}, from the [lesson plan](docs/teaching.md#{slug(heading)}) for "
             "lecturers. Each class lists its notebooks, what to do in class and as homework, and the student "
             "editions to hand out (the exercises' solutions replaced by stubs, checked by the library).",
             *[class_section(i, c, titles, rel, slug(heading)) for i, c in enumerate(classes, 1)],
             run_it_section(rel), more_section(), toctree()]
    return "\n\n".join(parts) + "\n"


def class_section(i: int, c: LessonClass, titles: dict[str, str], rel: Release, plan: str) -> str:
    """One class of the landing page: notebooks, minutes, what to do, student editions, the lesson plan."""
    paths = notebooks()
    minutes = f" · {c.minutes} minutes" if c.minutes else ""
    title = re.sub(r"^\d+\.\s*", "", c.title)
    nbs = ", ".join(f"[{n} · {titles[n]}](notebooks/{paths[n].name})" for n in c.notebooks if n in paths)
    student = ", ".join(f"{n} ([.ipynb]({rel.raw(f'notebooks/student/{paths[n].name}')}), "
                        f"[Colab]({rel.colab(f'notebooks/student/{paths[n].name}')}))"
                        for n in c.notebooks if (ROOT / "notebooks/student" / paths[n].name).is_file())
    lines = [f"### Class {i}: {title}{minutes}", "", f"- **Notebooks:** {nbs}", f"- **In class:** {c.in_class}",
             f"- **Homework:** {c.homework}", f"- **Student editions:** {student or 'none'}",
             f"- **Lesson plan:** [docs/teaching.md](docs/teaching.md#{plan})"]
    return "\n".join(lines)


def run_it_section(rel: Release) -> str:
    """How to run the series on a laptop and on Colab."""
    name = rel.repo_url.rsplit("/", 1)[1]
    return (f"## Run it yourself\n\n**On your machine** (no GPU needed; each notebook runs in seconds to minutes "
            f"on a laptop CPU):\n\n```bash\ngit clone --branch {rel.tag} {rel.repo_url}.git\ncd {name}\n"
            'pip install -e ".[dev]"\njupyter lab notebooks/\n```\n\n'
            "**On Colab:** the *Open in Colab* badge at the top of each notebook's page opens that notebook of "
            f"release {rel.tag} in Colab; its first code cell installs `simclr_lib` there. Colab asks for a GPU "
            "runtime (full mode); a CPU runtime runs the quick mode. Each page also links the notebook and its "
            "student edition for download.")


def more_section() -> str:
    """Links to the glossary, results, the lecturer's page and the API reference."""
    return ("## Also on this site\n\n- [Glossary](glossary.md): the series' terms and where each lives in the "
            "library.\n- [Results](docs/results.md): every number and figure of the series with the command that "
            "made it.\n- [Teaching the course](docs/teaching.md): lesson plan, student editions, exercises and "
            "their checkers, known surprises.\n- [API reference](api/index.md): the core modules of `simclr_lib`"
            " from their docstrings, each linked to the notebook that teaches it.")


def toctree() -> str:
    """The site's navigation (hidden toctrees: the sidebar)."""
    nbs = "\n".join(f"notebooks/{p.stem}" for p in notebooks().values())
    api = "\n".join(f"api/{m}" for m in CORE_MODULES)
    extra = "\n".join(f"docs/{p.stem}" for p in sorted((ROOT / "docs").glob("*.md"))
                      if p.stem not in ("results", "teaching"))
    return (f"```{{toctree}}\n:hidden:\n:caption: Notebooks\n\n{nbs}\n```\n\n"
            "```{toctree}\n:hidden:\n:caption: Course\n\ndocs/teaching\nglossary\ndocs/results\n"
            f"{extra}\n```\n\n```{{toctree}}\n:hidden:\n:caption: API reference\n\napi/index\n{api}\n```")


def glossary_page() -> str:
    """``glossary.md``: the glossary section of notebook 00, as its own page."""
    path = notebooks()["00"]
    cells = ["".join(c["source"]) for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "markdown"]
    start = next(i for i, s in enumerate(cells) if re.match(r"##\s+(\S+\s+)?Glossary", s))
    heading = cells[start].splitlines()[0].lstrip("# ").strip()
    body = cells[start].split("\n", 1)[1]
    return (f"# Glossary\n\nFrom [notebook 00, *{heading}*](notebooks/{path.name}#{slug(heading)}). The "
            f"numbers in brackets are the notebooks that teach each term.\n{body}\n")


def api_pages(rel: Release) -> dict[str, str]:
    """``api/<module>.md`` for each core module (automodule) and ``api/index.md``."""
    titles, modules, paths = notebook_titles(), taught_in(), notebooks()
    pages, rows = {}, ["| module | what it holds | taught in |", "|---|---|---|"]
    for m in CORE_MODULES:
        nbs = ", ".join(f"[notebook {n} · {titles[n]}](../notebooks/{paths[n].name})" for n in modules[m]
                        if n in paths) or "—"
        summary = first_docstring_line(ROOT / "simclr_lib" / f"{m}.py")
        pages[m] = (f"# `simclr_lib.{m}`\n\n**Taught in:** {nbs}. **Source:** [simclr_lib/{m}.py at "
                    f"{rel.tag}]({rel.blob(f'simclr_lib/{m}.py')}).\n\n```{{eval-rst}}\n.. automodule:: simclr_lib.{m}\n"
                    "   :members:\n   :show-inheritance:\n```\n")
        rows.append(f"| [`simclr_lib.{m}`]({m}.md) | {summary.replace('|', '/')} | {nbs} |")
    pages["index"] = ("# API reference\n\nThe core modules of `simclr_lib`, in the order of the paper's Algorithm 1,"
                      " generated from their docstrings. Each says which notebook teaches it.\n\n" + "\n".join(rows))
    return pages


def first_docstring_line(path: Path) -> str:
    """The first line of a module's docstring."""
    import ast

    doc = ast.get_docstring(ast.parse(path.read_text())) or ""
    return doc.strip().splitlines()[0] if doc.strip() else ""


def stage(src: Path, rel: Release) -> None:
    """Write everything Sphinx reads into ``src``: copies of the notebooks and docs, generated pages, conf.py."""
    shutil.rmtree(src, ignore_errors=True)
    (src / "notebooks").mkdir(parents=True)
    (src / "images").mkdir()
    (src / "images/colab-badge.svg").write_text(BADGE_SVG)
    favicon(src / "extra" / "favicon.ico")
    docs = [p for p in sorted((ROOT / "docs").rglob("*")) if p.is_file()]
    pages = {p.relative_to(ROOT).as_posix() for p in docs} | {f"notebooks/{p.name}" for p in notebooks().values()}
    plan_heading = lesson_plan((ROOT / "docs/teaching.md").read_text())[0]
    ctx = {"release": rel, "pages": pages, "modules": taught_in(), "plan": slug(plan_heading)}
    for p in docs:
        dest = src / p.relative_to(ROOT)
        dest.parent.mkdir(parents=True, exist_ok=True)
        if p.suffix == ".md":
            dest.write_text(rewrite_links(p.read_text(), p.relative_to(ROOT).as_posix(), pages, rel))
        else:
            shutil.copy2(p, dest)
    for num, p in notebooks().items():
        stage_notebook(num, p, src / "notebooks" / p.name, ctx)
    (src / "api").mkdir()
    for name, text in api_pages(rel).items():
        (src / "api" / f"{name}.md").write_text(text)
    (src / "index.md").write_text(landing_page(rel))
    (src / "glossary.md").write_text(glossary_page())
    (src / "conf.py").write_text(f"import sys\nsys.path.insert(0, {str(Path(__file__).parent)!r})\n"
                                 "from build_site import setup, sphinx_conf  # noqa: E402,F401\n"
                                 "globals().update(sphinx_conf())\n")


def favicon(path: Path) -> None:
    """A 32 px icon: two overlapping discs, two views of one image (without it browsers log a 404)."""
    from PIL import Image, ImageDraw

    img = Image.new("RGBA", (32, 32), (0, 0, 0, 0))
    draw = ImageDraw.Draw(img)
    draw.ellipse((1, 7, 19, 25), fill=(249, 171, 0, 255))
    draw.ellipse((13, 7, 31, 25), fill=(31, 111, 235, 200))
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, sizes=[(32, 32)])


def sphinx_conf() -> dict:
    """The Sphinx settings (``conf.py`` of the staged source reads them from here)."""
    rel = release()
    return {
        "project": "SimCLR, step by step", "author": "the SimCLR, step by step authors", "release": rel.tag,
        "extensions": ["myst_nb", "sphinx.ext.autodoc", "sphinx.ext.napoleon", "sphinx.ext.viewcode",
                       "sphinx-mathjax-offline"],  # the last one serves MathJax 3 from _static/ (no CDN)
        "nb_execution_mode": "off",  # the stored outputs, never re-executed
        "nb_merge_streams": True,  # stdout before stderr in each cell (streams are merged by merge_streams)
        "myst_enable_extensions": ["dollarmath", "amsmath", "colon_fence"],
        "myst_heading_anchors": 3,
        "napoleon_custom_sections": [("Shape", "notes_style")],
        "autodoc_member_order": "bysource",
        "autodoc_typehints": "description",
        "html_theme": "sphinx_book_theme",
        "html_title": "SimCLR, step by step",
        "html_theme_options": {"repository_url": rel.repo_url, "use_repository_button": True,
                               "use_download_button": False, "show_toc_level": 2, "home_page_in_toc": True},
        "html_context": {"default_mode": "light"},  # the theme logs a console error when no mode is set
        "html_favicon": "extra/favicon.ico",  # linked from every page, and at the root where browsers look
        "html_extra_path": ["extra"],
        "exclude_patterns": ["_build"],
    }


def link_notebooks(app, what, name, obj, options, lines: list[str]) -> None:
    """autodoc hook: "notebook NN" in a docstring becomes a link to that notebook's page."""
    paths = notebooks()

    def link(m: re.Match) -> str:
        num = m.group(1)
        return f":doc:`notebook {num} </notebooks/{paths[num].stem}>`" if num in paths else m.group(0)

    lines[:] = [re.sub(r"(?<![`/])\bnotebook (\d\d)\b", link, line) for line in lines]


def setup(app) -> dict:
    """Sphinx extension hook of the staged conf.py: notebook links in the API pages' docstrings."""
    app.connect("autodoc-process-docstring", link_notebooks)
    return {"parallel_read_safe": True}


def build(out: Path, quiet: bool = True) -> int:
    """Stage the sources under ``out/src`` and build the HTML site into ``out/html``; Sphinx's exit status."""
    from sphinx.cmd.build import build_main

    rel = release()
    for stale in ("html", "doctrees"):  # a clean build: no page of a removed notebook lingers
        shutil.rmtree(out / stale, ignore_errors=True)
    stage(out / "src", rel)
    args = ["-b", "html", str(out / "src"), str(out / "html"), "-d", str(out / "doctrees")]
    return build_main(args + (["-q"] if quiet else []))


def main(argv: list[str] | None = None) -> int:
    """Command line: build the site, print where it is, how many pages and how long it took."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "_site", help="output folder (default: _site/)")
    ap.add_argument("--verbose", action="store_true", help="Sphinx's progress lines, not only its warnings")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    rc = build(args.out.resolve(), quiet=not args.verbose)
    html = args.out.resolve() / "html"
    n = sum(1 for p in html.rglob("*.html") if "_static" not in p.parts)
    print(f"build_site: {n} HTML pages in {html} ({time.perf_counter() - t0:.0f} s); open {html / 'index.html'}")
    return rc


if __name__ == "__main__":
    sys.exit(main())
