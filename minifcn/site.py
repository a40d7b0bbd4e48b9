"""The course as notebooks and as a web page: ``minifcn course build``.

    minifcn course build --quick            # every lesson, quick mode, into site/
    minifcn course build --only 01 11       # two lessons (and the index, the exercises)

Each ``lessons/NN_name.py`` is a percent-format script (``# %%`` cells). The build converts
it to a notebook (jupytext), runs it in a fresh Jupyter kernel (nbclient) with the lesson's
options in the environment (MINIFCN_QUICK, MINIFCN_DEVICE, MINIFCN_LESSON_OUT: see
minifcn.course), and exports the executed notebook to HTML (nbconvert): text, code,
printed output and figures (embedded as PNG) in order. ``index.html`` is lessons/README.md
(its lessons table links to the pages), ``exercises.html`` its exercise section. Every
page has links to the previous and next lesson; a lesson that names exercises ends with
the commands that start them.

A paragraph of the lesson (``lesson.say(f"...")``) shows once, as text with its measured
numbers: the build splits each cell where its paragraphs start and end, and the page folds
a paragraph's code behind "show the code". ``api/`` is the API reference, one page per
public module (minifcn.reference, with pdoc); the lesson pages link the minifcn names they
use to it.

The tools are the optional extra ``course`` (pip install -e ".[course]").
"""

from __future__ import annotations

import ast
import importlib.util
import os
import re
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from . import reference

__all__ = ["COURSE_TOOLS", "CourseToolsMissing", "LessonFailed", "build_site",
           "default_lessons_dir", "execute_lesson", "find_lessons", "lesson_notebook",
           "require_course_tools"]

# module names (the PyPI names are the same)
COURSE_TOOLS = ("jupytext", "nbclient", "nbconvert", "nbformat", "ipykernel", "pdoc")
EXERCISES_HEADING = re.compile(r"^## .*exercises.*$", re.IGNORECASE | re.MULTILINE)


class CourseToolsMissing(ImportError):
    """The ``course`` extra is not installed."""


class LessonFailed(RuntimeError):
    """A lesson's cell raised (an assert of the lesson, most often): the message names the
    lesson and holds the cell and its traceback."""


def require_course_tools() -> None:
    """Raise CourseToolsMissing, in one line naming the extra, when a tool is missing."""
    missing = [name for name in COURSE_TOOLS if importlib.util.find_spec(name) is None]
    if missing:
        raise CourseToolsMissing(
            f"the course tools are not installed ({', '.join(missing)}): run "
            f"pip install -e \".[course]\" from the repository")


def default_lessons_dir() -> Path | None:
    """The repository's lessons/ folder beside the (editable) package, if it is there."""
    folder = Path(__file__).resolve().parent.parent / "lessons"
    return folder if folder.is_dir() else None


def find_lessons(lessons_dir: str | os.PathLike | None = None,
                 only: list[str] | None = None) -> list[Path]:
    """The lessons ``NN_name.py`` of ``lessons_dir`` in order; ``only`` keeps those whose
    number or name is listed ("01", "1", "01_convolution", "01_convolution.py")."""
    if lessons_dir is None:
        lessons_dir = default_lessons_dir()
        if lessons_dir is None:
            raise FileNotFoundError(
                "no lessons/ folder beside the minifcn package (it is there when minifcn "
                "is installed from the repository with pip install -e); pass --lessons DIR")
    folder = Path(lessons_dir)
    if not folder.is_dir():
        raise NotADirectoryError(f"--lessons {folder}: no such folder")
    lessons = sorted(folder.glob("[0-9][0-9]_*.py"))
    if not lessons:
        raise FileNotFoundError(f"--lessons {folder}: no lessons (files NN_name.py) in it")
    if only:
        def names(path: Path) -> set[str]:
            return {path.stem, path.stem[:2], str(int(path.stem[:2]))}

        wanted = {item.strip().removesuffix(".py") for item in only}
        unknown = sorted(wanted - set().union(*(names(path) for path in lessons)))
        if unknown:
            raise ValueError(f"--only: no lesson {', '.join(unknown)} in {folder} (there: "
                             f"{', '.join(path.stem for path in lessons)})")
        lessons = [path for path in lessons if names(path) & wanted]
    return lessons


def lesson_notebook(path: str | os.PathLike):
    """The lesson as an nbformat notebook (jupytext reads its ``# %%`` cells)."""
    require_course_tools()
    import jupytext

    notebook = jupytext.read(Path(path), fmt="py:percent")
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                       "language": "python"}
    return notebook


def execute_lesson(path: str | os.PathLike, out: str | os.PathLike, quick: bool = False,
                   device: str = "cpu", timeout: int | None = 900, cwd=None):
    """Run the lesson as a notebook in a fresh kernel; return the executed notebook.

    The options reach the lesson through the environment (MINIFCN_QUICK, MINIFCN_DEVICE,
    MINIFCN_LESSON_OUT); its figures are saved in ``out`` and shown in the notebook. A
    failing cell (a lesson's assert) raises nbclient's CellExecutionError, which names the
    cell and shows the traceback.
    """
    from nbclient import NotebookClient
    from traitlets.config import Config

    from . import course

    path = Path(path)
    notebook = lesson_notebook(path)
    env = {**os.environ, course.QUICK_VARIABLE: "1" if quick else "0",
           course.DEVICE_VARIABLE: device, course.OUT_VARIABLE: str(Path(out).resolve()),
           course.NAME_VARIABLE: path.stem, "MPLBACKEND": "Agg",
           # the kernel imports the same minifcn as this process, wherever it runs
           "PYTHONPATH": os.pathsep.join(filter(None, (str(Path(__file__).resolve().parents[1]),
                                                       os.environ.get("PYTHONPATH"))))}
    folder = str(cwd or Path(out).resolve())
    os.makedirs(folder, exist_ok=True)
    # IPC rather than TCP: the kernel talks to this process only (and does not warn that
    # TCP is unencrypted)
    with tempfile.TemporaryDirectory(prefix="minifcn-kernel-") as sockets:
        ipc = Config({"KernelManager": {"transport": "ipc",
                                        "ip": os.path.join(sockets, "kernel")}})
        client = NotebookClient(notebook, timeout=timeout, kernel_name="python3",
                                resources={"metadata": {"path": folder}}, config=ipc)
        client.execute(env=env)
    return notebook


@dataclass
class BuiltLesson:
    path: Path
    page: Path
    title: str
    seconds: float


def _title(path: Path) -> str:
    """The first line of the lesson's docstring: "Lesson 01: Convolution as ..."."""
    doc = ast.get_docstring(ast.parse(path.read_text())) or path.stem
    return doc.strip().splitlines()[0]


def _docstring_first(notebook) -> None:
    """On the page, the lesson's docstring opens it as text (title and what it teaches),
    not as code: it leaves the first cell's source, and its Markdown echo (course.start
    shows it in a kernel) leaves that cell's outputs."""
    import nbformat

    first = notebook.cells[0]
    try:
        module = ast.parse(first.source)
    except SyntaxError:
        return
    doc = ast.get_docstring(module)
    if not doc:
        return
    first.source = "\n".join(first.source.splitlines()[module.body[0].end_lineno:]).strip()
    first.outputs = [output for output in first.get("outputs", [])
                     if not output.get("data", {}).get("text/markdown", "").startswith("# ")]
    title, *rest = doc.strip().splitlines()
    notebook.cells.insert(0, nbformat.v4.new_markdown_cell(f"# {title}\n\n" + "\n".join(rest)))


TEXT_TAG = "minifcn-text"  # a cell of narrative only: its code is folded on the page


def _is_narrative(statement: ast.stmt, first: bool) -> bool:
    """``lesson.say(...)``, or ``lesson.heading(...)`` that does not open its cell (one that
    does is shown by the Markdown cell above it, and opens the code that follows)."""
    call = statement.value if isinstance(statement, ast.Expr) else None
    return (isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute)
            and isinstance(call.func.value, ast.Name) and call.func.value.id == "lesson"
            and (call.func.attr == "say" or (call.func.attr == "heading" and not first)))


def _holds_say(statement: ast.stmt) -> bool:
    """A compound statement (``with``, ``if``, ``for``, ``try``) with a ``lesson.say`` inside:
    its paragraphs cannot be cut out of it, so the whole statement is folded, and its text
    still shows once, as output (its code, paragraphs and all, behind "show the code")."""
    # a def's paragraphs are said where it is called, not where it is defined
    definition = (ast.Expr, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
    return not isinstance(statement, definition) and any(
        isinstance(node, ast.Expr) and _is_narrative(node, first=False)
        for node in ast.walk(statement))


def _fold_narrative(notebook) -> None:
    """Split each executed code cell where its narrative starts and ends, so that a
    paragraph shows once: as text (the say's output, with its numbers), its code folded.

    A cell ``code A; lesson.say(...); code B`` becomes three cells: A with its outputs, the
    say (tagged TEXT_TAG: the page folds its code) with its paragraph, B with its outputs.
    Outputs go by the line that each paragraph carries (course.TEXT_METADATA): what a cell
    printed before a paragraph belongs to the code before it. A say inside a ``with`` or
    an ``if`` folds that whole statement (:func:`_holds_say`).
    """
    import nbformat

    from .course import TEXT_METADATA

    cells = []
    for cell in notebook.cells:
        try:
            statements = ast.parse(cell.source).body if cell.cell_type == "code" else []
        except SyntaxError:
            statements = []
        narrative = [_is_narrative(statement, index == 0) or _holds_say(statement)
                     for index, statement in enumerate(statements)]
        if not any(narrative):
            cells.append(cell)
            continue
        # runs of statements of one kind; a run takes the comments above its first line
        runs: list[tuple[bool, list[ast.stmt]]] = []
        for statement, is_text in zip(statements, narrative, strict=True):
            if runs and runs[-1][0] == is_text:
                runs[-1][1].append(statement)
            else:
                runs.append((is_text, [statement]))
        lines = cell.source.splitlines()
        run_of_line = {}
        pieces = []
        start = 0
        for index, (is_text, run) in enumerate(runs):
            end = len(lines) if index == len(runs) - 1 else run[-1].end_lineno
            for statement in run:
                first = min([statement.lineno]
                            + [item.lineno for item in getattr(statement, "decorator_list", [])])
                for line in range(first, statement.end_lineno + 1):
                    run_of_line[line] = index
            pieces.append((is_text, "\n".join(lines[start:end]).strip("\n")))
            start = end
        outputs: list[list] = [[] for _ in runs]
        current = last = 0  # where an output without a line goes; the last run with one
        for output in cell.outputs:
            line = output.get("metadata", {}).get("text/markdown", {}).get(TEXT_METADATA)
            run = run_of_line.get(line)
            if run is None or run < last:
                outputs[current].append(output)
                continue
            outputs[run].append(output)
            last = run
            # what comes after a paragraph was printed by the code after it
            current = run + 1 if runs[run][0] and run + 1 < len(runs) else run
        for index, ((is_text, source), shown) in enumerate(zip(pieces, outputs, strict=True)):
            part = nbformat.v4.new_code_cell(source, execution_count=cell.execution_count,
                                             outputs=shown,
                                             metadata={"tags": [TEXT_TAG]} if is_text else {})
            part.id = f"{cell.id}-{index}" if len(runs) > 1 else cell.id
            cells.append(part)
    notebook.cells = cells


def _exercise_names(notebook) -> list[str]:
    found = re.search(r"course\.start\(__doc__,\s*exercises=\[([^\]]*)\]",
                      "\n".join(cell.source for cell in notebook.cells))
    return re.findall(r"[\"'](\w+)[\"']", found.group(1)) if found else []


# nbconvert's "lab" page without its scripts from the network (require.js, MathJax,
# mermaid: the lessons need none of them), so that a page opens offline, and with lines of
# a readable length. A cell of narrative (TEXT_TAG) shows its code folded: its text is its
# output.
PAGE_TEMPLATE = """{%- extends 'lab/index.html.j2' -%}
{%- block html_head_js -%}{%- endblock html_head_js -%}
{%- block html_head_js_mathjax -%}{%- endblock html_head_js_mathjax -%}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
{%- block data_png scoped -%}
<div class="jp-RenderedImage jp-OutputArea-output {{ extra_class }}">
<img src="data:image/png;base64,{{ output.data['image/png'] | escape_html }}"
 alt="{{ (output | get_metadata('alt', 'image/png')) or 'figure' | escape_html }}">
</div>
{%- endblock data_png -%}
{%- block input_group -%}
{%- if "minifcn-text" in cell.metadata.get("tags", []) -%}
<details class="minifcn-text-code"><summary>show the code</summary>
{{ super() }}
</details>
{%- else -%}
{{ super() }}
{%- endif -%}
{%- endblock input_group -%}
{%- block extra_css -%}
<style>
main { max-width: 1180px; margin: 0 auto; }
details.minifcn-text-code > summary {
  cursor: pointer; width: max-content; font-size: 0.8em;
  color: var(--jp-ui-font-color2, #616161);
  margin-left: calc(var(--jp-cell-prompt-width, 64px) + var(--jp-cell-padding, 5px));
}
.jp-InputArea a.minifcn-api { color: inherit; text-decoration: underline dotted; }
.jp-RenderedHTMLCommon a.minifcn-api code { color: var(--jp-content-link-color, #1976d2); }
</style>
{%- endblock extra_css -%}
"""


def _html(notebook, title: str) -> str:
    import jinja2
    from nbconvert import HTMLExporter

    exporter = HTMLExporter(template_name="lab", template_file="minifcn_page.html.j2",
                            extra_loaders=[jinja2.DictLoader(
                                {"minifcn_page.html.j2": PAGE_TEMPLATE})])
    body, _ = exporter.from_notebook_node(notebook, resources={"metadata": {"name": title}})
    return body


def _markdown_page(text: str, title: str) -> str:
    import nbformat

    notebook = nbformat.v4.new_notebook()
    notebook.cells.append(nbformat.v4.new_markdown_cell(text))
    return _html(notebook, title)


def _split_readme(readme: str) -> tuple[str, str | None]:
    """lessons/README.md -> (everything before the exercises section, that section)."""
    found = EXERCISES_HEADING.search(readme)
    if not found:
        return readme, None
    rest = readme[found.end():]
    following = re.search(r"^## ", rest, re.MULTILINE)
    end = found.end() + (following.start() if following else len(rest))
    return readme[:found.start()] + readme[end:], readme[found.start():end]


def _link_pages(text: str, built: list[Path]) -> str:
    """Links to NN_name.py in the README become links to the built pages; a link to a
    lesson not built (``--only``) becomes plain text rather than a broken link."""
    pages = {path.name: f"{path.stem}.html" for path in built}

    def relink(found: re.Match) -> str:
        page = pages.get(found.group(2))
        return f"[{found.group(1)}]({page})" if page else found.group(1)

    return re.sub(r"\[([^\]]+)\]\((\d\d_\w+\.py)\)", relink, text)


def _reference_section(api: reference.Reference) -> str:
    """The index's list of the API reference's pages, with each module's summary."""
    rows = "".join(f"\n- [`{name}`]({url}): {api.summaries[name]}"
                   for name, url in api.pages.items())
    return (f"\n\n## The API reference\n\nEvery public name of minifcn with its signature, "
            f"docstring and source, one page per module (the lessons link the names they "
            f"use to it):\n{rows}\n")


def _after_lessons(index: str, section: str) -> str:
    """``section`` inserted after the index's "## The lessons" part (else at its end)."""
    lessons = re.search(r"^## The lessons\b.*$", index, re.MULTILINE)
    following = re.search(r"^## ", index[lessons.end():], re.MULTILINE) if lessons else None
    if not following:
        return index + section
    at = lessons.end() + following.start()
    return index[:at].rstrip("\n") + section + "\n" + index[at:]


def build_site(out: str | os.PathLike = "site", lessons_dir=None, quick: bool = False,
               only: list[str] | None = None, device: str = "cpu", timeout: int = 900,
               log=print) -> list[BuiltLesson]:
    """Execute the lessons as notebooks and write ``out``/index.html, exercises.html,
    one NN_name.html per lesson (figures embedded; also saved under out/figures/) and the
    API reference under out/api/."""
    require_course_tools()
    import nbformat
    from nbclient.exceptions import CellExecutionError

    lessons = find_lessons(lessons_dir, only)
    folder = lessons[0].parent
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    api = reference.build_reference(out)
    log(f"  API reference: {len(api.pages)} pages in {out / reference.FOLDER} "
        f"({time.perf_counter() - started:.1f} s)")
    for warning in api.warnings:
        log(f"  API reference: warning: {warning}")
    readme_path = folder / "README.md"
    readme = readme_path.read_text() if readme_path.is_file() else ""
    lessons_part, exercises_part = _split_readme(readme)
    exercises_link = "exercises.html" if exercises_part else None
    titles = {path: _title(path) for path in lessons}
    mode = "quick mode (smaller problems, the same checks)" if quick else "default settings"
    built = []
    for number, path in enumerate(lessons):
        started = time.perf_counter()
        try:
            notebook = execute_lesson(path, out / "figures" / path.stem, quick=quick,
                                      device=device, timeout=timeout)
        except CellExecutionError as error:
            raise LessonFailed(f"{path.name} failed as a notebook:\n{error}") from None
        seconds = time.perf_counter() - started
        log(f"  {path.name}: executed in {seconds:.1f} s")
        previous = lessons[number - 1] if number > 0 else None
        following = lessons[number + 1] if number + 1 < len(lessons) else None
        links = ([f"[&larr; {titles[previous]}]({previous.stem}.html)"] if previous else [])
        links.append("[all lessons](index.html)")
        links += [f"[{titles[following]} &rarr;]({following.stem}.html)"] if following else []
        navigation = " &middot; ".join(links)
        _fold_narrative(notebook)
        _docstring_first(notebook)
        notebook.cells.insert(0, nbformat.v4.new_markdown_cell(
            f"{navigation}\n\n*Run as a notebook in {mode}: `python lessons/{path.name}` "
            f"prints the same story in a terminal.*"))
        ending = navigation
        names = _exercise_names(notebook)
        if names:
            commands = "\n".join(f"minifcn exercises start {name}\nminifcn exercises check "
                                 f"{name}" for name in names)
            where = (f" ([how the exercises work]({exercises_link}))" if exercises_link
                     else "")
            ending = (f"## Build it yourself\n\nThe exercises in which you write what this "
                      f"lesson taught{where}:\n\n```bash\n{commands}\n```\n\n{navigation}")
        notebook.cells.append(nbformat.v4.new_markdown_cell(ending))
        page = out / f"{path.stem}.html"
        aliases = reference.lesson_aliases(cell.source for cell in notebook.cells
                                           if cell.cell_type == "code")
        page.write_text(reference.link_names(_html(notebook, titles[path]), api, aliases))
        built.append(BuiltLesson(path, page, titles[path], seconds))
    names = [lesson.path for lesson in built]
    index = _link_pages(lessons_part, names) if lessons_part else "# The minifcn course\n"
    if exercises_link:
        index += (f"\n\n## Build it yourself: the exercises\n\n"
                  f"[The exercises]({exercises_link}): write each layer yourself; minifcn "
                  f"checks it.\n")
    # any lesson the README does not list still gets a line on the index
    index += "".join(f"\n- [{lesson.title}]({lesson.page.name})" for lesson in built
                     if f"({lesson.page.name})" not in index)
    index = _after_lessons(index, _reference_section(api))
    index += f"\n\n*Built in {mode}; {len(built)} lesson page(s).*\n"
    (out / "index.html").write_text(_markdown_page(index, "The minifcn course"))
    if exercises_part:
        (out / "exercises.html").write_text(_markdown_page(
            _link_pages(exercises_part, names) + "\n\n[all lessons](index.html)\n",
            "minifcn exercises"))
    return built
