"""The ``lossview`` command: argument parsing and dispatch; errors become one line and an exit status.

``main(argv)`` changes nothing process-global, so programs and tests may call it; ``console_main`` is the
installed ``lossview`` script and ``python -m lossview``, and may tune the process it owns.
"""

from __future__ import annotations

import argparse
import difflib
import gc
import math
import os
import sys
import threading
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

from lossview import commands
from lossview import view as v

import lossfmt

PROG = "lossview"
COMMANDS = ("plot", "summary", "export", "compact", "import-tb")
DEFAULT_WEB_PORT = 8988
INT64_MAX = 2**63 - 1

DESCRIPTION = """\
Plot lossfmt training-loss files (.arrow), live or to an image.

commands (the first argument; plain `lossview FILE...` plots):
  lossview [plot] FILE...          plot one run or compare several (files, globs or directories)
  lossview summary FILE...         a table per run and tag: hparams, events, steps, first/last/min, rate
  lossview export FILE... OUT      write the plotted rows to OUT.csv | .parquet | .feather
  lossview compact FILE...         repair/compact live or crashed files into footer'd Arrow files
  lossview import-tb LOGDIR OUT    convert TensorBoard tfevents scalars to lossfmt (all points)
Run `lossview COMMAND --help` for a command's options."""

PLOT_EPILOG = """\
examples:
  lossview run.arrow --follow                        live window, redrawn within a second of each flush
  lossview run.arrow --follow -o live.png            headless: live.png atomically replaced on each change
  lossview runs/ --tag 'val/*' --logy -o cmp.svg     every run in runs/, one colour per run
  lossview run.arrow --normalize per-item --per epoch --band
                                                     per-item epoch means, each epoch's spread shaded
  lossview 'sweep/seed*.arrow' --mean-runs --band    mean across seeds with their spread (min..max)
  lossview run.arrow --follow --web 8988             the live figure on http://127.0.0.1:8988/

--band shades a spread: with --per it is each bucket's min..max (or mean +/- std with --spread std);
with --mean-runs it is the spread across runs of the curves as drawn (smoothed if smoothing is on).
Exit status: 0 ok (also Ctrl-C/SIGTERM while following or showing a window), 1 error, 2 bad usage."""


# ------------------------------------------------------------------------------------------------ parsing


def _per(text: str) -> str | int:
    if text == "epoch":
        return text
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be 'epoch' or a number of steps, not {text!r}") from None
    if not 1 <= n <= INT64_MAX:  # steps are int64
        raise argparse.ArgumentTypeError(f"must be a number of steps from 1 to {INT64_MAX}, not {n}")
    return n


def _positive(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not v > 0 or not math.isfinite(v):
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, not {text}")
    return v


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"a port is 1..65535, not {port}")
    return port


def _transform_options(p: argparse.ArgumentParser, *, smooth: bool = True) -> None:
    g = p.add_argument_group("data")
    g.add_argument(
        "--tag",
        action="append",
        default=[],
        metavar="GLOB",
        help="only tags matching GLOB (repeatable; e.g. --tag loss --tag 'val/*'); default: every tag",
    )
    if smooth:
        g.add_argument(
            "--smooth",
            metavar="SPEC",
            help="ema:W (TensorBoard's debiased EMA, 0<=W<1), ma:N (trailing moving average) or none. "
            f"Default {v.DEFAULT_SMOOTH} on per-step curves; bucketed (--per) curves and series of "
            f"<= {v.FEW_POINTS} points stay unsmoothed unless --smooth is given",
        )
    g.add_argument(
        "--normalize",
        choices=["per-item"],
        help="per-item averages: mean-reduced values weighted by count, sum-reduced divided by count",
    )
    g.add_argument("--per", type=_per, metavar="epoch|N", help="aggregate per epoch or per N steps")
    g.add_argument(
        "--keep-rewound",
        action="store_true",
        help="keep events orphaned by a resumed run's rewind (default: drop them, like TensorBoard's purge)",
    )


def _plot_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG,
        usage="%(prog)s [plot] FILE... [options]\n       %(prog)s {summary,export,compact,import-tb} ...",
        description=DESCRIPTION,
        epilog=PLOT_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "files", nargs="+", metavar="FILE", help=".arrow files, globs or directories of .arrow files"
    )
    p.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    _transform_options(p)
    vg = p.add_argument_group("view")
    vg.add_argument(
        "--x",
        choices=v.X_AXES,
        default="step",
        help="x axis: step, items (items seen: the cumulative count, e.g. samples or tokens), epoch "
        "(fractional for per-step events), time (wall clock, UTC; --local-time for yours) or relative "
        "(time since the run's first event); default step",
    )
    vg.add_argument("--local-time", action="store_true", help="--x time in the local time zone, not UTC")
    vg.add_argument(
        "--label",
        metavar="KEY",
        help="name and colour compared runs by a hyperparameter of their metadata (e.g. --label lr)",
    )
    vg.add_argument("--split", action="store_true", help="one axes per tag (default: every tag on one axes)")
    vg.add_argument(
        "--band",
        action="store_true",
        help="shade the spread: each bucket's with --per, across runs with --mean-runs",
    )
    vg.add_argument(
        "--spread",
        choices=v.BANDS,
        default="minmax",
        help="what --band shades: minmax (default) or std (mean +/- one standard deviation)",
    )
    vg.add_argument(
        "--mean-runs",
        action="store_true",
        help="one curve per tag: the mean across all runs given (seeds of a sweep, ranks of a job)",
    )
    vg.add_argument("--logy", action="store_true", help="logarithmic y axis")
    vg.add_argument("--ylim", nargs=2, type=float, metavar=("LO", "HI"), help="fixed y range")
    vg.add_argument("--title", help="figure title (default: the run name, or 'N runs')")
    vg.add_argument("--size", nargs=2, type=float, metavar=("W", "H"), default=(8.0, 4.5), help="inches")
    vg.add_argument("--dpi", type=int, default=150, help="resolution of PNG output (default 150)")
    o = p.add_argument_group("output")
    o.add_argument(
        "-o", "--output", metavar="OUT", help="write OUT.png|.svg|.pdf instead of opening a window"
    )
    o.add_argument(
        "--follow", "-f", action="store_true", help="keep watching the files and redraw as they grow"
    )
    o.add_argument(
        "--poll",
        type=_positive,
        metavar="SECONDS",
        help="with --follow: look for changes every SECONDS instead of file events (network filesystems)",
    )
    o.add_argument(
        "--web",
        nargs="?",
        const=DEFAULT_WEB_PORT,
        type=_port,
        metavar="PORT",
        help=f"serve the figure to a browser (matplotlib WebAgg; default port {DEFAULT_WEB_PORT})",
    )
    o.add_argument("--host", default="127.0.0.1", help="address --web binds to (default 127.0.0.1)")
    return p


def _summary_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=f"{PROG} summary",
        description="Per run and tag: the run's hyperparameters (metadata), events, step range, first, "
        "last, min and its step, last smoothed value, non-finite count, events/s and duration.",
    )
    p.add_argument("files", nargs="+", metavar="FILE")
    _transform_options(p)
    p.add_argument(
        "--json", action="store_true", help="print JSON (one object per run and tag, with hparams) instead"
    )
    return p


def _export_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=f"{PROG} export",
        description="Write the rows the plot would draw (after --tag/--normalize/--per, with a `smoothed` "
        "column) to CSV, Parquet or Feather. Several files add a `run` column.",
    )
    p.add_argument("files", nargs="+", metavar="FILE")
    p.add_argument("out", metavar="OUT", help="OUT.csv, OUT.parquet or OUT.feather")
    _transform_options(p)
    return p


def _compact_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=f"{PROG} compact",
        description="Compact live or crashed files into footer'd Arrow IPC files (readable by pandas, "
        "Polars, pyarrow.dataset). Keeps every complete event and the run id; drops a torn tail.",
    )
    p.add_argument("files", nargs="+", metavar="FILE")
    return p


def _import_tb_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=f"{PROG} import-tb",
        description="Convert TensorBoard tfevents scalars (every point; tags, steps and wall times kept) "
        "to lossfmt. LOGDIR is one run, a tree of runs or one event file; OUT is one .arrow file (one run) "
        "or a directory receiving <run>.arrow per run.",
    )
    p.add_argument("logdir", metavar="LOGDIR")
    p.add_argument("out", metavar="OUT", help="OUT.arrow, or a directory for several runs")
    p.add_argument("--overwrite", action="store_true", help="replace existing output files")
    return p


# -------------------------------------------------------------------------------------------------- main

PARSERS: dict[str, Callable[[], argparse.ArgumentParser]] = {
    "plot": _plot_parser,
    "summary": _summary_parser,
    "export": _export_parser,
    "compact": _compact_parser,
    "import-tb": _import_tb_parser,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (0 ok, 1 error, 2 usage, 130 interrupted).

    Changes no process-global state (garbage collector, switch interval, matplotlib backend and rcParams,
    signal handlers and warning filters are as they were when it returns), so a program may embed it.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    command = args[0] if args and args[0] in COMMANDS else "plot"
    if args and args[0] == command:
        args = args[1:]
    elif command == "plot" and args and _mistyped(args[0]):
        return 2
    try:
        ns = PARSERS[command]().parse_intermixed_args(args)
    except SystemExit as exc:
        return int(exc.code or 0)
    with warnings.catch_warnings():
        warnings.simplefilter("default")
        warnings.showwarning = _warn
        return _run(command, ns)


def console_main() -> int:
    """The ``lossview`` console script (and ``python -m lossview``): ``main()`` in a process it owns.

    Only here, because the process exits right after: a 1 ms thread switch interval lets the file read
    (C++ and numpy, GIL released) overlap the matplotlib import on another thread without its many short
    calls queueing behind the import (0.2-0.3 s of a 10M-event render); and ``gc.freeze()`` before exit
    makes the interpreter's teardown skip collecting every object matplotlib created (about 0.2 s).
    """
    sys.setswitchinterval(min(sys.getswitchinterval(), 0.001))
    status = main()
    gc.freeze()
    return status


def _mistyped(word: str) -> bool:
    """A first argument that is no file but close to a command name: say which one was meant."""
    if os.path.exists(word) or set("*?[") & set(word) or word.startswith("-") or word.endswith(".arrow"):
        return False
    close = difflib.get_close_matches(word, COMMANDS, n=1, cutoff=0.6)
    if not close:
        return False
    print(f"{PROG}: error: unknown command {word!r}; did you mean {close[0]!r}?", file=sys.stderr)
    return True


def _warn(message: Warning | str, *args: object, **kwargs: object) -> None:
    print(f"{PROG}: warning: {message}", file=sys.stderr)


def _run(command: str, ns: argparse.Namespace) -> int:
    """Run a command; the errors a user can fix are one line, anything else is a bug (its traceback)."""
    try:
        return RUNNERS[command](ns)
    except KeyboardInterrupt:
        return 130
    except v.OptionError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    except (lossfmt.LossfmtError, v.ViewerError) as exc:
        return _fail(str(exc))
    except OSError as exc:  # a missing path, a permission, a full disk
        return _fail(_os_message(exc))


def _fail(message: str) -> int:
    print(f"{PROG}: error: {message}", file=sys.stderr)
    return 1


def _os_message(exc: OSError) -> str:
    if exc.filename is not None and exc.strerror:
        return f"{os.fsdecode(exc.filename)}: {exc.strerror.lower()}"
    return str(exc)


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("lossfmt")
    except Exception:  # not installed as a distribution
        return "unknown"


def _view(ns: argparse.Namespace) -> v.View:
    smooth = getattr(ns, "smooth", None)
    view = v.View(
        tags=tuple(ns.tag),
        smooth=v.DEFAULT_SMOOTH if smooth is None else smooth,
        smooth_explicit=smooth is not None,
        per=ns.per,
        normalize=ns.normalize,
        x=getattr(ns, "x", "step"),
        band=ns.spread if getattr(ns, "band", False) else None,
        mean_runs=getattr(ns, "mean_runs", False),
        keep_rewound=ns.keep_rewound,
        label=getattr(ns, "label", None),
    )
    view.check()
    return view


# -------------------------------------------------------------------------------------------------- plot


def _plot(ns: argparse.Namespace) -> int:
    from lossview.app import Target

    view = _view(ns)
    _check_plot(ns)
    target = Target(tuple(ns.files), ns.output, ns.dpi, ns.follow, ns.poll, ns.web, ns.host)
    # Files are read and checked while matplotlib is imported on another thread: the read is mostly
    # C++ and numpy (no GIL), the import mostly Python, so both cores work; a bad file still fails fast.
    preload = threading.Thread(target=_import_plotting, name="lossview-import", daemon=True)
    preload.start()
    try:
        runs = None if ns.follow else v.load(ns.files, view)
    finally:
        preload.join()
    from lossview import app
    from lossview.plot import Style

    curves = None
    compare = len(ns.files) > 1 or any(set("*?[") & set(f) or os.path.isdir(f) for f in ns.files)
    if runs is not None:
        commands.require_events(runs, view)
        curves, compare = v.curves(runs, view), len(runs) > 1
    style = Style(
        split=ns.split,
        compare=compare and not ns.mean_runs,
        logy=ns.logy,
        ylim=tuple(ns.ylim) if ns.ylim else None,
        title=ns.title,
        width=ns.size[0],
        height=ns.size[1],
        local_time=ns.local_time,
    )
    return app.run(target, view, style, curves)


def _check_plot(ns: argparse.Namespace) -> None:
    if ns.poll is not None and not ns.follow:
        raise v.OptionError("--poll only makes sense with --follow")
    if ns.output and ns.web is not None:
        raise v.OptionError("choose one of -o OUT and --web")
    if ns.ylim and not ns.ylim[0] < ns.ylim[1]:
        raise v.OptionError(f"--ylim: LO must be below HI (got {ns.ylim[0]:g} {ns.ylim[1]:g})")
    if ns.local_time and ns.x != "time":
        raise v.OptionError("--local-time is for --x time")
    if ns.output:
        commands.check_out(Path(ns.output), (".png", ".svg", ".pdf"))


def _import_plotting() -> None:
    import lossview.plot  # noqa: F401
    import matplotlib.backends.backend_agg  # noqa: F401


# ------------------------------------------------------------------------------------------ subcommands


def _summary(ns: argparse.Namespace) -> int:
    return commands.summary(ns.files, _view(ns), as_json=ns.json)


def _export(ns: argparse.Namespace) -> int:
    return commands.export(ns.files, ns.out, _view(ns))


def _compact(ns: argparse.Namespace) -> int:
    return commands.compact(ns.files)


def _import_tb(ns: argparse.Namespace) -> int:
    return commands.import_tb(ns.logdir, ns.out, overwrite=ns.overwrite)


RUNNERS: dict[str, Callable[[argparse.Namespace], int]] = {
    "plot": _plot,
    "summary": _summary,
    "export": _export,
    "compact": _compact,
    "import-tb": _import_tb,
}

__all__ = ["console_main", "main"]
