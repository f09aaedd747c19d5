"""``python -m lossview``: the same as the ``lossview`` command."""

from lossview.cli import main

raise SystemExit(main())
