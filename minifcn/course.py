"""What every lesson in ``lessons/`` shares: its command line, output folder and device.

    lesson = course.start(__doc__, exercises=["conv2d"])  # parses --quick, --out, --device
    lesson.say("...")                     # narrative, wrapped to the terminal
    path = lesson.figure("overlap.png")   # where to save a figure (and it is announced)

Every lesson accepts:
  --quick         a few seconds instead of up to a minute (what the test suite runs)
  --out DIR       where figures go (default: lesson_output/<lesson name>)
  --device cpu|gpu

Every lesson is also a percent-format notebook (``# %%`` cells): opened with jupytext, or
run cell by cell in VS Code, PyCharm or Spyder. There the command line belongs to the
kernel, not to the lesson, so the options come from the environment instead:
  MINIFCN_QUICK=1           quick mode
  MINIFCN_DEVICE=cpu|gpu    the device
  MINIFCN_LESSON_OUT=DIR    where figures go
and figures are shown inline as well as saved.
"""

from __future__ import annotations

import argparse
import ast
import linecache
import os
import re
import sys
import textwrap
import time
from dataclasses import dataclass, field

from . import backend

__all__ = ["Lesson", "in_notebook", "start"]

DEFAULT_OUTPUT = "lesson_output"
QUICK_VARIABLE, DEVICE_VARIABLE, OUT_VARIABLE = (
    "MINIFCN_QUICK", "MINIFCN_DEVICE", "MINIFCN_LESSON_OUT")
# Set by ``minifcn course build`` so that a notebook knows its lesson's file name.
NAME_VARIABLE = "MINIFCN_LESSON"


# characters that Markdown would read as markup in the lessons' plain-text narrative
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]<>#|~$])")


def in_notebook() -> bool:
    """True inside an IPython kernel (Jupyter, VS Code, PyCharm's notebooks): there
    ``sys.argv`` is the kernel's own command line, never the lesson's."""
    if "IPython" not in sys.modules:
        return False
    shell = getattr(sys.modules["IPython"], "get_ipython", lambda: None)()
    return shell is not None


def _run_as_script(main) -> bool:
    """True when ``python lessons/NN_name.py ...`` started this process: the command
    line is then the lesson's. (A console that runs cells has another argv[0].)"""
    script = getattr(main, "__file__", None)
    return (bool(script) and bool(sys.argv) and not in_notebook()
            and os.path.abspath(sys.argv[0]) == os.path.abspath(script))


def _opens_its_cell(frame) -> bool:
    """True when the line running in ``frame`` is the first statement of its cell (IPython
    keeps each cell's source in linecache under the cell's own file name)."""
    lines = linecache.getlines(frame.f_code.co_filename)
    for number, line in enumerate(lines, start=1):
        if line.strip() and not line.lstrip().startswith("#"):
            return number == frame.f_lineno
    return False


def _notebook_docstring(doc: str | None) -> str | None:
    """The lesson's docstring in a kernel, where ``__doc__`` is IPython's own: the module
    docstring opens the lesson's first cell, which is the cell running now."""
    if doc and doc.lstrip().startswith("Lesson"):
        return doc
    shell = sys.modules["IPython"].get_ipython()
    history = shell.user_ns.get("_ih") or [""]
    try:
        return ast.get_docstring(ast.parse(shell.transform_cell(history[-1]))) or doc
    except SyntaxError:
        return doc


def _display(obj) -> None:
    from IPython.display import display

    display(obj)


# The metadata key of a Markdown output that lesson.say or lesson.heading showed; its value
# is the line, in the cell, of the cell's own statement that was running (the build puts
# each paragraph beside the statements that made it: minifcn.site).
TEXT_METADATA = "minifcn_text_line"


def _narrative(text: str):
    """``text`` as a Markdown display object, tagged with the line of the running cell's
    statement (the outermost ``<module>`` frame: the cell's code, whichever function of
    the lesson called lesson.say)."""
    from IPython.display import Markdown

    frame = sys._getframe(2)
    while frame is not None and frame.f_code.co_name != "<module>":
        frame = frame.f_back
    return Markdown(text, metadata={TEXT_METADATA: frame.f_lineno} if frame else None)


@dataclass
class Lesson:
    name: str
    quick: bool
    out: str
    device: str
    xp: object
    started: float = field(default_factory=time.perf_counter)
    figures: list[str] = field(default_factory=list)
    exercises: tuple[str, ...] = ()

    notebook: bool = False

    def say(self, text: str = "") -> None:
        """Print a paragraph of narrative (dedented and wrapped); in a notebook, show it
        as text between the outputs (Markdown, so that it reads as prose on a page)."""
        paragraphs = [" ".join(p.split())
                      for p in textwrap.dedent(text).strip("\n").split("\n\n")]
        if self.notebook:
            # plain text, not Markdown: "C*KH*KW" must not turn KH into italics
            _display(_narrative("\n\n".join(_MARKDOWN_SPECIAL.sub(r"\\\1", p)
                                              for p in paragraphs)))
            return
        print("\n\n".join(textwrap.fill(p, width=92) for p in paragraphs))
        print()

    def heading(self, title: str) -> None:
        """A section title. In a notebook a heading that opens its cell is left to the
        Markdown cell above it; one further down a cell is shown as Markdown."""
        if not self.notebook:
            print(f"\n== {title} ==\n")
        elif not _opens_its_cell(sys._getframe(1)):
            _display(_narrative(f"### {title}"))

    def figure(self, filename: str) -> str:
        """The path to save a figure under; call :meth:`saved` after writing it."""
        os.makedirs(self.out, exist_ok=True)
        return os.path.join(self.out, filename)

    def saved(self, path: str) -> None:
        """Announce a saved figure; in a notebook, also show it."""
        self.figures.append(path)
        print(f"  [figure] {path}")
        if self.notebook:
            from IPython.display import Image

            name = os.path.splitext(os.path.basename(path))[0].replace("_", " ")
            _display(Image(filename=path, alt=f"{self.name}: figure {name}"))

    def asarray(self, host):
        """A host (NumPy) array on this lesson's device."""
        return backend.to_device(host, self.device)

    def done(self) -> None:
        elapsed = time.perf_counter() - self.started
        print(f"\n{self.name}: every check passed in {elapsed:.1f} s"
              + (f"; figures in {self.out}/" if self.figures else ""))
        if self.exercises:
            first, *others = self.exercises
            print(f"\nNow build it yourself: minifcn exercises start {first}, fill it in, "
                  f"then minifcn exercises check {first}"
                  + (f" (and after it: {', '.join(others)})" if others else "") + ".")


def start(doc: str, argv: list[str] | None = None, seed: int = 0,
          exercises: tuple[str, ...] | list[str] = ()) -> Lesson:
    """Read the lesson's options, seed minifcn, and print the lesson's title.

    Run as a script (``python lessons/NN_name.py ...``) or given ``argv``, the options come
    from the command line; in a notebook kernel or a console that runs cells, from the
    environment (MINIFCN_QUICK, MINIFCN_DEVICE, MINIFCN_LESSON_OUT), since the command line
    there is not the lesson's. ``exercises`` names the exercises (``minifcn exercises
    list``) in which a learner writes what this lesson teaches; the lesson's last lines
    point to them.
    """
    main = sys.modules.get("__main__")
    if in_notebook():
        doc = _notebook_docstring(doc)
    title = doc.strip().splitlines()[0]
    from_command_line = argv is not None or _run_as_script(main)
    if from_command_line:
        script = os.path.splitext(os.path.basename(main.__file__ if argv is None
                                                   else getattr(main, "__file__", None)
                                                   or "lesson"))[0]
    else:
        # "Lesson 01: ..." -> lesson_01, unless the course build names the file
        script = os.environ.get(NAME_VARIABLE) or "_".join(title.split(":")[0].lower().split())
    parser = argparse.ArgumentParser(description=title,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="run in a few seconds (smaller data, fewer steps)")
    parser.add_argument("--out", default=None,
                        help=f"folder for figures (default {DEFAULT_OUTPUT}/{script})")
    parser.add_argument("--device", default="cpu", choices=list(backend.DEVICES))
    if from_command_line:
        args = parser.parse_args(argv)
    else:
        args = _options_from_environment()
    try:
        xp = backend.array_module(args.device)
    except backend.DeviceUnavailableError as error:
        if not from_command_line:
            raise
        parser.exit(2, f"{script}: {error}\n")
    backend.manual_seed(seed)
    notebook = in_notebook()
    lesson = Lesson(name=script, quick=args.quick,
                    out=args.out or os.path.join(DEFAULT_OUTPUT, script),
                    device=args.device, xp=xp, exercises=tuple(exercises), notebook=notebook)
    if notebook:
        from IPython.display import Markdown

        # the docstring as the notebook's title and summary ("- " lines are a list already)
        _display(Markdown(f"# {title}\n\n" + textwrap.dedent(
            "\n".join(doc.strip().splitlines()[1:])).strip()))
    else:
        print(title)
        print("=" * len(title))
    if lesson.quick:
        print("(quick mode: smaller problems, same checks)")
    print()
    return lesson


def _options_from_environment() -> argparse.Namespace:
    """The lesson's options in a kernel: MINIFCN_QUICK=1, MINIFCN_DEVICE, MINIFCN_LESSON_OUT."""
    quick = os.environ.get(QUICK_VARIABLE, "").strip().lower()
    if quick not in ("", "0", "1", "false", "true", "no", "yes"):
        raise ValueError(f"lesson: {QUICK_VARIABLE} should be 1 or 0, got {quick!r}")
    device = backend.default_device()  # MINIFCN_DEVICE, checked there
    out = os.environ.get(OUT_VARIABLE, "").strip() or None
    return argparse.Namespace(quick=quick in ("1", "true", "yes"), device=device, out=out)
