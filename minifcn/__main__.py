"""``python -m minifcn``: the same as the ``minifcn`` command."""

from .cli import main

raise SystemExit(main())
