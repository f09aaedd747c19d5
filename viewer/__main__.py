"""``python -m lossview``: the same as the ``lossview`` command."""

from lossview.cli import console_main

raise SystemExit(console_main())
