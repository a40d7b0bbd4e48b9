"""The lessons as notebooks and the course as a web page (minifcn course build).

Lessons are picked by pattern, not by number, so that renumbering the course keeps these
tests meaningful: the first lesson, and the lesson on metrics.
"""

from __future__ import annotations

import base64
import html
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from minifcn import cli, course, reference, site

LESSONS_DIR = Path(__file__).resolve().parent.parent / "lessons"
LESSONS = sorted(LESSONS_DIR.glob("[0-9][0-9]_*.py"))
FIRST = LESSONS[0]
LAST = LESSONS[-1]
METRICS = next(iter(LESSONS_DIR.glob("[0-9][0-9]_metrics.py")))
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _course_tools_missing() -> str | None:
    try:
        site.require_course_tools()
    except site.CourseToolsMissing as error:
        return str(error)
    return None


needs_course_tools = pytest.mark.skipif(
    _course_tools_missing() is not None,
    reason=f"the course extra is missing: {_course_tools_missing()}")
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="no chromium on PATH (Debian: apt-get install chromium): the "
                             "site is not opened in a real browser")


@pytest.fixture(autouse=True)
def _quiet_jupyter(monkeypatch):
    # jupyter_core warns (a DeprecationWarning, an error in this suite) that it will move
    # its folders to platformdirs unless told to use them already.
    monkeypatch.setenv("JUPYTER_PLATFORM_DIRS", "1")


# --- lessons are percent-format scripts ---------------------------------------------------


@pytest.mark.parametrize("lesson", LESSONS, ids=[path.stem for path in LESSONS])
def test_every_section_of_a_lesson_is_a_cell_with_a_markdown_heading(lesson):
    source = lesson.read_text()
    headings = re.findall(r'^lesson\.heading\("([^"]+)"\)', source, re.MULTILINE)
    assert headings, f"{lesson.name}: no top-level section (lesson.heading at a cell's start)"
    for title in headings:
        assert f'# %% [markdown]\n# ## {title}\n' in source, (
            f"{lesson.name}: section {title!r} has no Markdown cell carrying its heading")
        assert f'# %%\nlesson.heading("{title}")' in source, (
            f"{lesson.name}: section {title!r} does not open a code cell")


def test_options_come_from_the_environment_when_argv_is_not_the_lessons(tmp_path):
    """A console that runs cells (PyCharm, Spyder) has its own argv: the lesson must not
    parse it (an unknown -f would stop it with SystemExit 2) but read MINIFCN_QUICK and
    MINIFCN_LESSON_OUT."""
    out = tmp_path / "figures"
    # the lesson's code run in the console's own __main__, as a cell runner does
    code = ("import sys; sys.argv = ['ipykernel_launcher.py', '-f', 'kernel.json']; "
            f"source = open({str(METRICS)!r}).read(); "
            "exec(compile(source, 'cell', 'exec'), {'__name__': '__main__'})")
    env = {**os.environ, "MPLBACKEND": "Agg", course.QUICK_VARIABLE: "1",
           course.OUT_VARIABLE: str(out)}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            cwd=tmp_path, timeout=180, env=env)
    assert result.returncode == 0, result.stderr
    assert "(quick mode: smaller problems, same checks)" in result.stdout
    assert "every check passed" in result.stdout
    assert sorted(out.glob("*.png")), "the figures should go to MINIFCN_LESSON_OUT"


@pytest.mark.parametrize("value, quick", [("1", True), ("0", False), ("", False)])
def test_quick_mode_from_the_environment(monkeypatch, value, quick):
    monkeypatch.setenv(course.QUICK_VARIABLE, value)
    monkeypatch.delenv(course.OUT_VARIABLE, raising=False)
    monkeypatch.delenv("MINIFCN_DEVICE", raising=False)
    options = course._options_from_environment()
    assert (options.quick, options.device, options.out) == (quick, "cpu", None)


def test_a_wrong_environment_value_is_refused_clearly(monkeypatch):
    monkeypatch.setenv(course.QUICK_VARIABLE, "fast")
    with pytest.raises(ValueError, match="MINIFCN_QUICK should be 1 or 0, got 'fast'"):
        course._options_from_environment()


@needs_course_tools
def test_in_a_notebook_the_narrative_is_plain_text_and_figures_show(monkeypatch, tmp_path):
    shown = []
    monkeypatch.setattr(course, "_display", shown.append)
    lesson = course.Lesson(name="01_x", quick=True, out=str(tmp_path), device="cpu", xp=None,
                           notebook=True)
    lesson.say("""
        im2col has C*KH*KW = 27 rows;
        see state_dict <keys> [here].

        A second paragraph.
    """)
    assert shown[0].data == ("im2col has C\\*KH\\*KW = 27 rows; see state\\_dict \\<keys\\> "
                             "\\[here\\].\n\nA second paragraph.")
    figure = tmp_path / "tiny_plot.png"
    figure.write_bytes(base64.b64decode(
        "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJ"
        "RU5ErkJggg=="))
    lesson.saved(str(figure))
    assert shown[1].data == figure.read_bytes() and shown[1].alt == "01_x: figure tiny plot"
    assert lesson.figures == [str(figure)]


# --- lessons run as notebooks ---------------------------------------------------------------


@needs_course_tools
@pytest.mark.parametrize("lesson", [FIRST, METRICS], ids=[FIRST.stem, METRICS.stem])
def test_a_lesson_runs_as_a_notebook_in_quick_mode(lesson, tmp_path):
    out = tmp_path / "figures"
    notebook = site.execute_lesson(lesson, out, quick=True, cwd=tmp_path)
    kinds = [cell.cell_type for cell in notebook.cells]
    assert kinds.count("markdown") >= 2 and kinds.count("code") >= 3, kinds
    printed = "".join(output.get("text", "") for cell in notebook.cells
                      if cell.cell_type == "code" for output in cell.outputs)
    assert "(quick mode: smaller problems, same checks)" in printed
    assert f"{lesson.stem}: every check passed" in printed
    saved = re.findall(r"\[figure\] (\S+)", printed)
    assert saved, "the lesson should save figures"
    for figure in saved:
        assert Path(figure).parent == out and Path(figure).stat().st_size > 0, figure
    shown = [output for cell in notebook.cells if cell.cell_type == "code"
             for output in cell.outputs if "image/png" in output.get("data", {})]
    assert len(shown) == len(saved), "every saved figure should also show in the notebook"
    narrative = [output for cell in notebook.cells if cell.cell_type == "code"
                 for output in cell.outputs if "text/markdown" in output.get("data", {})]
    assert narrative, "lesson.say should show its text as Markdown in a notebook"
    # each paragraph carries the line of its cell's statement that showed it (the site puts
    # it there); headings that do not open their cell carry one too
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            text = output.get("data", {}).get("text/markdown", "")
            if text and not text.startswith("# "):
                line = output["metadata"]["text/markdown"][course.TEXT_METADATA]
                assert re.match(r"\s*lesson\.(say|heading)\(",
                                cell.source.splitlines()[line - 1]), (cell.source, line)
    headings = [cell.source.splitlines()[0] for cell in notebook.cells
                if cell.cell_type == "markdown" and cell.source.startswith("## ")]
    shown_again = [output["data"]["text/markdown"] for output in narrative
                   if output["data"]["text/markdown"].replace("###", "##") in headings]
    assert headings and not shown_again, "a heading opening its cell shows only in Markdown"


# --- a paragraph shows once: as text, its code folded -----------------------------------------


def _output(text: str | None = None, markdown: str | None = None, line: int | None = None):
    import nbformat

    if text is not None:
        return nbformat.v4.new_output("stream", name="stdout", text=text)
    return nbformat.v4.new_output("display_data", data={"text/markdown": markdown},
                                  metadata={"text/markdown": {course.TEXT_METADATA: line}})


@needs_course_tools
def test_a_cell_is_split_where_its_paragraphs_start_and_end():
    import nbformat

    source = ('lesson.heading("1. Sums")\n'
              "total = 1 + 1\n"
              'print("before")\n'
              "# the paragraph\n"
              'lesson.say(f"""\n'
              "    One and one make {total}.\n"
              '""")\n'
              'lesson.heading("2. Products")\n'
              'print("after")\n'
              "with open(__file__) as handle:\n"
              '    lesson.say("nested")\n')
    cell = nbformat.v4.new_code_cell(source, execution_count=3, outputs=[
        _output(text="before\n"), _output(markdown="One and one make 2.", line=5),
        _output(markdown="### 2. Products", line=8), _output(text="after\n"),
        _output(markdown="nested", line=11)])
    notebook = nbformat.v4.new_notebook(cells=[cell, nbformat.v4.new_markdown_cell("# text")])
    site._fold_narrative(notebook)
    code, text, rest, nested, markdown = notebook.cells
    assert code.source == 'lesson.heading("1. Sums")\ntotal = 1 + 1\nprint("before")'
    assert [output.text for output in code.outputs] == ["before\n"]
    assert text.source.startswith("# the paragraph\nlesson.say(") and text.source.endswith(
        'lesson.heading("2. Products")')
    assert text.metadata["tags"] == [site.TEXT_TAG]
    assert [output.data["text/markdown"] for output in text.outputs] == [
        "One and one make 2.", "### 2. Products"]
    assert rest.source == 'print("after")' and "tags" not in rest.metadata
    assert [output.text for output in rest.outputs] == ["after\n"]
    # a say inside a with block cannot be cut out of it: the whole block is folded
    assert nested.source.startswith("with open") and nested.metadata["tags"] == [site.TEXT_TAG]
    assert [output.data["text/markdown"] for output in nested.outputs] == ["nested"]
    assert {code.id, text.id, rest.id, nested.id} == {f"{cell.id}-{k}" for k in range(4)}
    assert code.execution_count == text.execution_count == nested.execution_count == 3
    assert markdown.source == "# text"


@needs_course_tools
def test_a_function_that_says_something_keeps_its_code_shown():
    """A def's paragraphs are said where it is called: its definition stays visible."""
    import nbformat

    source = 'def report(value):\n    lesson.say(f"got {value}")\n'
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source)])
    site._fold_narrative(notebook)
    (cell,) = notebook.cells
    assert cell.source == source and "tags" not in cell.metadata


# --- the site ---------------------------------------------------------------------------------


def test_course_build_without_the_tools_names_the_extra(monkeypatch, capsys):
    monkeypatch.setattr(site.importlib.util, "find_spec",
                        lambda name: None if name == "nbclient" else object())
    assert cli.main(["course", "build", "--quick", "--only", "01"]) == 1
    error = capsys.readouterr().err
    assert error.strip() == ("minifcn course: error: the course tools are not installed "
                             "(nbclient): run pip install -e \".[course]\" from the repository")


def test_course_build_refuses_unknown_lessons_and_folders(tmp_path, capsys):
    if _course_tools_missing():
        pytest.skip(f"the course extra is missing: {_course_tools_missing()}")
    assert cli.main(["course", "build", "--only", "99", "--out", str(tmp_path)]) == 1
    assert "--only: no lesson 99 in" in capsys.readouterr().err
    assert cli.main(["course", "build", "--lessons", str(tmp_path / "none")]) == 1
    assert "no such folder" in capsys.readouterr().err
    assert cli.main(["course", "build", "--lessons", str(tmp_path)]) == 1
    assert "no lessons (files NN_name.py)" in capsys.readouterr().err
    assert not (tmp_path / "index.html").exists()


@needs_course_tools
def test_a_failing_lesson_stops_the_build_naming_it_and_its_claim(tmp_path, capsys):
    """Any lessons folder in the course's style works (--lessons); a lesson whose assert
    fails as a notebook stops the build with its name, its cell and its message."""
    lessons = tmp_path / "lessons"
    lessons.mkdir()
    (lessons / "01_broken.py").write_text(
        '"""Lesson 01: A false claim\n\nRun: python lessons/01_broken.py\n"""\n\n'
        "from minifcn import course\n\nlesson = course.start(__doc__)\n\n"
        "# %% [markdown]\n# ## 1. The claim\n\n# %%\n"
        'lesson.heading("1. The claim")\nassert 1 + 1 == 3, "one and one make three"\n')
    status = cli.main(["course", "build", "--lessons", str(lessons), "--out",
                       str(tmp_path / "site")])
    error = capsys.readouterr().err
    assert status == 1
    assert "minifcn course: error: 01_broken.py failed as a notebook" in error
    assert "one and one make three" in error and "AssertionError" in error
    assert not (tmp_path / "site" / "index.html").exists()


@pytest.fixture(scope="module")
def built_site(tmp_path_factory):
    """The site of the first and the last lesson, in quick mode."""
    if _course_tools_missing():
        pytest.skip(f"the course extra is missing: {_course_tools_missing()}")
    out = tmp_path_factory.mktemp("site")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("JUPYTER_PLATFORM_DIRS", "1")
        status = cli.main(["course", "build", "--quick", "--out", str(out), "--only",
                           LESSONS[0].stem[:2], LESSONS[-1].stem[:2]])
    assert status == 0
    return out


def test_the_site_has_an_index_and_linked_lesson_pages(built_site):
    first, last = LESSONS[0], LESSONS[-1]
    pages = {path.name for path in built_site.glob("*.html")}
    assert pages == {"index.html", "exercises.html", f"{first.stem}.html", f"{last.stem}.html"}
    index = (built_site / "index.html").read_text()
    assert f'href="{first.stem}.html"' in index and f'href="{last.stem}.html"' in index
    assert 'href="exercises.html"' in index
    for module in reference.REFERENCE_MODULES:
        page = f"api/{module.replace('.', '/')}.html"
        assert f'href="{page}"' in index, f"the index should link the reference of {module}"
        assert (built_site / page).is_file(), page
    assert not re.search(r'href="\d\d_\w+\.py"', index), "no link to a page not built"
    page = (built_site / f"{first.stem}.html").read_text()
    assert f'href="{last.stem}.html"' in page, "the first lesson links to the next one built"
    assert 'href="index.html"' in page
    assert "minifcn exercises start" in page and 'href="exercises.html"' in page
    assert not re.search(r'src="http|import\("http|<link[^>]*href="http', page), (
        "a page should load nothing from the network")
    assert re.search(rf'<img alt="{first.stem}: figure [^"]+" src="data:image/png;base64,', page)
    assert sorted((built_site / "figures" / first.stem).glob("*.png")), "figures as files too"


def test_a_lesson_links_the_names_it_uses_to_the_reference(built_site):
    page = (built_site / f"{FIRST.stem}.html").read_text()
    links = re.findall(r'<a class="minifcn-api" href="(api/[^"#]+)#([^"]+)">(.*?)</a>', page,
                       re.DOTALL)
    texts = {re.sub(r"<[^>]+>", "", inner) for _, _, inner in links}
    assert "nn.Conv2d" in texts and "minifcn.to_numpy" in texts, sorted(texts)
    for url, anchor, _ in links:
        target = built_site / url
        assert target.is_file() and f'id="{anchor}"' in target.read_text(), (url, anchor)


def _folded_paragraph(page: str) -> str:
    """The start (100 characters) of the first paragraph whose code is folded."""
    folded = page.index('<details class="minifcn-text-code">')
    output = page.index('data-mime-type="text/markdown"', folded)
    paragraph = re.search(r"<p>(.*?)</p>", page[output:], re.DOTALL).group(1)
    return " ".join(html.unescape(re.sub(r"<[^>]+>", "", paragraph)).split())[:100]


def test_a_paragraph_shows_once_and_its_code_is_folded(built_site):
    page = (built_site / f"{FIRST.stem}.html").read_text()
    folded = re.findall(r'<details class="minifcn-text-code">(.*?)</details>', page, re.DOTALL)
    assert folded, "the paragraphs' code should be folded"
    assert all('<span class="n">lesson</span><span class="o">.</span><span class="n">say'
               '</span>' in code or "heading" in code for code in folded)
    for lesson in (FIRST, LAST):  # the last lesson says things inside an if block, too
        shown = re.sub(r'<details class="minifcn-text-code">.*?</details>', "",
                       (built_site / f"{lesson.stem}.html").read_text(), flags=re.DOTALL)
        assert '<span class="n">say</span>' not in shown, f"{lesson.name}: a lesson.say in sight"
    outside = re.sub(r'<details class="minifcn-text-code">.*?</details>', "", page,
                     flags=re.DOTALL)
    start = _folded_paragraph(page)
    text = " ".join(html.unescape(re.sub(r"<[^>]+>", " ", outside)).split())
    assert len(start) == 100 and text.count(start) == 1, start


def _open_in_chromium(page: Path, tmp_path: Path) -> dict:
    """Load ``page`` in headless Chromium inside a same-folder frame and read, with
    JavaScript, its title, its text and the state of every <img> once it has loaded."""
    probe = page.parent / f"probe_{page.stem}.html"
    probe.write_text(f"""<!DOCTYPE html><html><body><pre id="result">not loaded</pre>
<iframe id="page" src="{page.name}" style="width:1280px;height:900px"></iframe>
<script>
document.getElementById("page").addEventListener("load", () => {{
  const doc = document.getElementById("page").contentDocument;
  const images = Array.from(doc.images);
  document.getElementById("result").textContent = JSON.stringify({{
    title: doc.title, text: doc.body.innerText, images: images.length,
    broken: images.filter(i => !(i.complete && i.naturalWidth > 0))
                  .map(i => i.src.slice(0, 80))}});
}});
</script></body></html>""")
    command = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
               "--disable-background-networking", "--disable-component-update",
               "--disable-sync", "--no-first-run", "--allow-file-access-from-files",
               f"--user-data-dir={tmp_path / 'chromium'}", "--virtual-time-budget=20000",
               "--dump-dom", probe.as_uri()]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    found = re.search(r'<pre id="result">(.*?)</pre>', result.stdout, re.DOTALL)
    assert found and found.group(1) != "not loaded", f"the page did not load:\n{result.stdout}"
    return json.loads(html.unescape(found.group(1)))


@needs_chromium
def test_a_browser_shows_the_index(built_site, tmp_path):
    shown = _open_in_chromium(built_site / "index.html", tmp_path)
    assert shown["title"] == "The minifcn course"
    assert shown["broken"] == []
    assert LESSONS[0].name in shown["text"] and "Build it yourself" in shown["text"]


@needs_chromium
def test_a_browser_shows_a_lesson_with_its_figures_and_checks(built_site, tmp_path):
    lesson = LESSONS[0]
    shown = _open_in_chromium(built_site / f"{lesson.stem}.html", tmp_path)
    assert shown["title"] == _title(lesson)
    assert _title(lesson) in shown["text"]
    figures = sorted((built_site / "figures" / lesson.stem).glob("*.png"))
    assert shown["images"] == len(figures) > 0, (shown["images"], figures)
    assert shown["broken"] == [], f"images that did not load: {shown['broken']}"
    assert f"{lesson.stem}: every check passed" in shown["text"]
    # a paragraph reads once; its code is behind "show the code"
    page = (built_site / f"{lesson.stem}.html").read_text()
    assert " ".join(shown["text"].split()).count(_folded_paragraph(page)) == 1
    assert "show the code" in shown["text"] and "lesson.say" not in shown["text"]


@needs_chromium
def test_a_browser_shows_a_reference_page(built_site, tmp_path):
    from minifcn import nn

    shown = _open_in_chromium(built_site / "api" / "minifcn" / "nn.html", tmp_path)
    assert shown["title"] == "minifcn.nn: minifcn API reference"
    assert shown["broken"] == []
    first_sentence = " ".join(nn.Conv2d.__doc__.split(".")[0].split()).replace("``", "")
    assert "class Conv2d" in shown["text"] and first_sentence in shown["text"], first_sentence
    assert "The minifcn course" in shown["text"]


def _title(lesson: Path) -> str:
    return lesson.read_text().split('"""')[1].strip().splitlines()[0]
