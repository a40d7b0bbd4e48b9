"""What every lesson in ``lessons/`` shares: its command line, output folder and device.

    lesson = course.start(__doc__, exercises=["conv2d"])  # parses --quick, --out, --device
    lesson.say("...")                     # narrative, wrapped to the terminal
    path = lesson.figure("overlap.png")   # where to save a figure (and it is announced)

Every lesson accepts:
  --quick         a few seconds instead of up to a minute (what the test suite runs)
  --out DIR       where figures go (default: lesson_output/<lesson name>)
  --device cpu|gpu
"""

from __future__ import annotations

import argparse
import os
import sys
import textwrap
import time
from dataclasses import dataclass, field

from . import backend

__all__ = ["Lesson", "start"]

DEFAULT_OUTPUT = "lesson_output"


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

    def say(self, text: str = "") -> None:
        """Print a paragraph of narrative (dedented and wrapped)."""
        paragraphs = textwrap.dedent(text).strip("\n").split("\n\n")
        print("\n\n".join(textwrap.fill(" ".join(p.split()), width=92) for p in paragraphs))
        print()

    def heading(self, title: str) -> None:
        print(f"\n== {title} ==\n")

    def figure(self, filename: str) -> str:
        """The path to save a figure under; call :meth:`saved` after writing it."""
        os.makedirs(self.out, exist_ok=True)
        return os.path.join(self.out, filename)

    def saved(self, path: str) -> None:
        self.figures.append(path)
        print(f"  [figure] {path}")

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
    """Parse the lesson's command line, seed minifcn, and print the lesson's title.

    ``exercises`` names the exercises (``minifcn exercises list``) in which a learner
    writes what this lesson teaches; the lesson's last lines point to them.
    """
    main = sys.modules.get("__main__")
    script = os.path.splitext(os.path.basename(getattr(main, "__file__", "lesson") or
                                               "lesson"))[0]
    parser = argparse.ArgumentParser(description=doc.strip().splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="run in a few seconds (smaller data, fewer steps)")
    parser.add_argument("--out", default=None,
                        help=f"folder for figures (default {DEFAULT_OUTPUT}/{script})")
    parser.add_argument("--device", default="cpu", choices=list(backend.DEVICES))
    args = parser.parse_args(argv)
    try:
        xp = backend.array_module(args.device)
    except backend.DeviceUnavailableError as error:
        parser.exit(2, f"{script}: {error}\n")
    backend.manual_seed(seed)
    lesson = Lesson(name=script, quick=args.quick,
                    out=args.out or os.path.join(DEFAULT_OUTPUT, script),
                    device=args.device, xp=xp, exercises=tuple(exercises))
    print(doc.strip().splitlines()[0])
    print("=" * len(doc.strip().splitlines()[0]))
    if lesson.quick:
        print("(quick mode: smaller problems, same checks)")
    print()
    return lesson
