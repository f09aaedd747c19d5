"""`python -m bench`: run the benchmark suite and write the report."""

from bench.cli import main

raise SystemExit(main())
