"""`python -m bench`: run the benchmark suite and write the report."""

import os

# Single-threaded BLAS, set before numpy loads: the toy training loop then runs on one core at a stable
# speed, and what the training-loop tax measures is our thread's contention, not BLAS threads fighting
# over the same two cores.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from bench.cli import main

raise SystemExit(main())
