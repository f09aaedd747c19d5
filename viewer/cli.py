"""The ``lossview`` command: argument parsing and subcommands; errors become one line and an exit status."""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import signal
import sys
import threading
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

from lossview import data

PROG = "lossview"
COMMANDS = ("plot", "summary", "export", "compact", "import-tb")
EXPORT_FORMATS = (".csv", ".parquet", ".feather", ".arrow")
DEFAULT_WEB_PORT = 8988

DESCRIPTION = """\
Plot lossfmt training-loss files (.arrow), live or to an image.

commands (the first argument; plain `lossview FILE...` plots):
  lossview [plot] FILE...          plot one run or compare several (files, globs or directories)
  lossview summary FILE...         a table per run and tag: events, steps, first/last/min, rate
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
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be a positive number of steps, not {n}")
    return n


def _positive(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not v > 0 or not math.isfinite(v):
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, not {text}")
    return v


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
            f"Default {data.DEFAULT_SMOOTH} on per-step curves; bucketed (--per) curves and series of "
            f"<= {data.FEW_POINTS} points stay unsmoothed unless --smooth is given",
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
    v = p.add_argument_group("view")
    v.add_argument(
        "--x",
        choices=data.X_AXES,
        default="step",
        help="x axis: step, epoch (fractional for per-step events), "
        "time (wall clock, UTC) or relative (time since the run's first event); default step",
    )
    v.add_argument("--split", action="store_true", help="one axes per tag (default: every tag on one axes)")
    v.add_argument(
        "--band",
        action="store_true",
        help="shade the spread: each bucket's with --per, across runs with --mean-runs",
    )
    v.add_argument(
        "--spread",
        choices=data.BANDS,
        default="minmax",
        help="what --band shades: minmax (default) or std (mean +/- one standard deviation)",
    )
    v.add_argument(
        "--mean-runs",
        action="store_true",
        help="one curve per tag: the mean across all runs given (seeds of a sweep, ranks of a job)",
    )
    v.add_argument("--logy", action="store_true", help="logarithmic y axis")
    v.add_argument("--ylim", nargs=2, type=float, metavar=("LO", "HI"), help="fixed y range")
    v.add_argument("--title", help="figure title (default: the run name, or 'N runs')")
    v.add_argument("--size", nargs=2, type=float, metavar=("W", "H"), default=(8.0, 4.5), help="inches")
    v.add_argument("--dpi", type=int, default=150, help="resolution of PNG output (default 150)")
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
        type=int,
        metavar="PORT",
        help=f"serve the figure to a browser (matplotlib WebAgg; default port {DEFAULT_WEB_PORT})",
    )
    o.add_argument("--host", default="127.0.0.1", help="address --web binds to (default 127.0.0.1)")
    o.add_argument("--term", action="store_true", help="draw in the terminal (braille); live with --follow")
    return p


def _summary_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=f"{PROG} summary",
        description="Per run and tag: events, step range, first, last, min and its step, last smoothed "
        "value, non-finite count, events/s and duration.",
    )
    p.add_argument("files", nargs="+", metavar="FILE")
    _transform_options(p)
    p.add_argument("--json", action="store_true", help="print JSON (one object per run and tag) instead")
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


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (0 ok, 1 error, 2 usage, 130 interrupted)."""
    status = _main(list(sys.argv[1:] if argv is None else argv))
    if argv is None:  # the process's own command (`lossview`, `python -m lossview`): it exits next
        # Nothing is collected after this, so the interpreter's teardown skips its garbage-collector passes
        # over every object matplotlib created (about 0.2 s, a fifth of a render).
        gc.freeze()
    return status


def _main(args: list[str]) -> int:
    command = args[0] if args and args[0] in COMMANDS else "plot"
    if args and args[0] == command:
        args = args[1:]
    parsers: dict[str, tuple[Callable[[], argparse.ArgumentParser], Callable[[argparse.Namespace], int]]] = {
        "plot": (_plot_parser, _plot),
        "summary": (_summary_parser, _summary),
        "export": (_export_parser, _export),
        "compact": (_compact_parser, _compact),
        "import-tb": (_import_tb_parser, _import_tb),
    }
    make, run = parsers[command]
    try:
        ns = make().parse_intermixed_args(args)
    except SystemExit as exc:
        return int(exc.code or 0)
    with warnings.catch_warnings():
        warnings.simplefilter("default")
        warnings.showwarning = _warn
        return _run(run, ns)


def _warn(message: Warning | str, *args: object, **kwargs: object) -> None:
    print(f"{PROG}: warning: {message}", file=sys.stderr)


def _run(run: Callable[[argparse.Namespace], int], ns: argparse.Namespace) -> int:
    try:
        return run(ns)
    except KeyboardInterrupt:
        return 130
    except OSError as exc:
        return _fail(_os_message(exc))
    except (ValueError, ImportError, RuntimeError) as exc:  # LossFormatError is a ValueError
        return _fail(str(exc))


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


def _view(ns: argparse.Namespace) -> data.View:
    view = data.View(
        tags=tuple(ns.tag),
        smooth=data.DEFAULT_SMOOTH if getattr(ns, "smooth", None) is None else ns.smooth,
        smooth_explicit=getattr(ns, "smooth", None) is not None,
        per=ns.per,
        normalize=ns.normalize,
        x=getattr(ns, "x", "step"),
        band=ns.spread if getattr(ns, "band", False) else None,
        mean_runs=getattr(ns, "mean_runs", False),
        keep_rewound=ns.keep_rewound,
    )
    view.check()
    return view


def _read(files: Sequence[str], columns: Sequence[str] | None = None) -> tuple[list[Path], object]:
    """The files' events, only ``columns`` of them when given (what the command needs: faster reads)."""
    paths = data.expand(files)
    for p in paths:
        if p.is_file() and p.stat().st_size == 0:
            raise ValueError(f"{p}: empty file (0 bytes): not a lossfmt file yet")
    return paths, data.load(paths, columns)


# -------------------------------------------------------------------------------------------------- plot


def _plot(ns: argparse.Namespace) -> int:
    view = _view(ns)
    if ns.term:
        if ns.output or ns.web is not None:
            raise ValueError("--term draws in the terminal: use it without -o and --web")
        from lossview import term

        return term.run(ns.files, tags=view.tags, smooth=ns.smooth, follow=ns.follow)
    if ns.poll is not None and not ns.follow:
        raise ValueError("--poll only makes sense with --follow")
    if ns.output and ns.web is not None:
        raise ValueError("choose one of -o OUT and --web")
    if ns.ylim and not ns.ylim[0] < ns.ylim[1]:
        raise ValueError(f"--ylim: LO must be below HI (got {ns.ylim[0]:g} {ns.ylim[1]:g})")
    if ns.output:
        out = Path(ns.output)
        if out.suffix.lower() not in (".png", ".svg", ".pdf"):
            raise ValueError(f"{out}: output must end in .png, .svg or .pdf")
        if not out.parent.is_dir():
            raise FileNotFoundError(2, "No such directory", os.fspath(out.parent))
    # Files are read and checked while matplotlib is imported on another thread: the read is mostly
    # C++ and numpy (no GIL), the import mostly Python, so both cores work; a bad file still fails fast.
    # Each of the many Arrow and numpy calls takes the GIL back from the import when it returns: a 1 ms
    # switch interval (not 5 ms) keeps them from queueing behind it (0.2-0.3 s of a 10M-event render).
    interval = sys.getswitchinterval()
    sys.setswitchinterval(min(interval, 0.001))
    preload = threading.Thread(target=_import_plotting, name="lossview-import", daemon=True)
    preload.start()
    try:
        if ns.follow:
            compare = len(ns.files) > 1 or any(set("*?[") & set(f) or os.path.isdir(f) for f in ns.files)
            curves = None
        else:
            paths, table = _read(ns.files, view.columns())
            compare = len(paths) > 1
            if table.num_rows == 0:
                raise ValueError(f"{', '.join(map(str, paths))}: no events in the file")
            curves = data.curves(data.apply(table, view), view)
            if not curves:
                raise ValueError(f"no tag matches {' '.join(ns.tag)}")
    finally:
        preload.join()
        sys.setswitchinterval(interval)
    from lossview import plot

    style = plot.Style(
        split=ns.split,
        compare=compare and not ns.mean_runs,
        logy=ns.logy,
        ylim=tuple(ns.ylim) if ns.ylim else None,
        title=ns.title,
        width=ns.size[0],
        height=ns.size[1],
    )
    if not ns.output:
        return _window(ns, view, style, curves)
    from matplotlib.figure import Figure

    fig = Figure(figsize=ns.size, dpi=ns.dpi, layout="constrained")
    lp = plot.LossPlot(fig, view, style, plot.FileOutput(ns.output, dpi=ns.dpi))
    if curves is not None:
        lp.update(curves)
        return 0
    return _follow_headless(ns, view, lp)


def _import_plotting() -> None:
    import lossview.plot  # noqa: F401
    import matplotlib.backends.backend_agg  # noqa: F401


def _follow_headless(ns: argparse.Namespace, view: data.View, lp: object) -> int:
    from lossview.follow import CurveCache, FollowLoop, Sources, Watcher

    sources = Sources(ns.files)
    watcher = Watcher(sources, poll=ns.poll)
    stop = threading.Event()

    cache = CurveCache(view)

    def redraw() -> None:
        curves = cache.curves(sources)
        if curves is not None:
            lp.update(curves)

    def on_signal(signum: int, frame: object) -> None:
        stop.set()
        watcher.changed.set()

    loop = FollowLoop(sources, watcher, redraw)
    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        watcher.start()
        loop.tick()
        loop.run(stop)
    finally:
        watcher.stop()
        for s, handler in previous.items():
            signal.signal(s, handler)
    return 0


def _window(ns: argparse.Namespace, view: data.View, style: object, curves: list[data.Curve] | None) -> int:
    import matplotlib
    from lossview import plot

    if ns.web is not None:
        try:
            import tornado  # noqa: F401  (WebAgg's server)
        except ImportError:
            raise ImportError("--web needs tornado: pip install 'lossfmt[web]'") from None
        matplotlib.use("webagg")
        matplotlib.rcParams["webagg.address"] = ns.host
        matplotlib.rcParams["webagg.port"] = ns.web
        matplotlib.rcParams["webagg.open_in_browser"] = False
        matplotlib.rcParams["webagg.port_retries"] = 1  # serve on PORT or fail; never quietly elsewhere
        # matplotlib's WebAgg Ctrl-C handler calls a tornado API deprecated in 6.3; not the user's concern.
        warnings.filterwarnings("ignore", "add_callback_from_signal is deprecated", DeprecationWarning)
    import matplotlib.pyplot as plt

    backend = matplotlib.get_backend().lower()
    if backend in ("agg", "pdf", "ps", "svg", "cairo", "template"):
        raise ValueError(
            f"no interactive display (matplotlib backend {backend!r}): use -o OUT.png, or --web [PORT]"
        )
    fig = plt.figure(figsize=ns.size, layout="constrained")
    if fig.canvas.manager is not None:  # the window's (or web page's) title, instead of "Figure 1"
        fig.canvas.manager.set_window_title(f"lossview: {' '.join(ns.files)}")
    lp = plot.LossPlot(fig, view, style, plot.CanvasOutput())
    stop = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        stop.set()

    timer_cb: list[Callable[[], None]] = []
    if ns.follow:
        from lossview.follow import CurveCache, FollowLoop, Sources, Watcher

        sources = Sources(ns.files)
        watcher = Watcher(sources, poll=ns.poll)

        waiting = fig.text(0.5, 0.5, f"waiting for {' '.join(ns.files)} ...", ha="center", color="0.4")

        cache = CurveCache(view)

        def redraw() -> None:
            curves = cache.curves(sources)
            if curves is not None:
                waiting.set_visible(False)
                lp.update(curves)

        loop = FollowLoop(sources, watcher, redraw)
        watcher.start()
        try:
            loop.tick()  # a file that is not lossfmt fails here, before any window opens
        except BaseException:
            watcher.stop()
            raise
        timer_cb.append(loop.tick)
    else:
        watcher = None
        lp.update(curves)

    def on_timer() -> None:
        if stop.is_set():
            plt.close("all")
            if ns.web is not None:  # WebAgg's server outlives its figures: stop its loop too (SIGTERM)
                import tornado.ioloop

                tornado.ioloop.IOLoop.current().stop()
            return
        for cb in timer_cb:
            cb()

    # Redraws are driven from the GUI's main thread; the watchdog thread only sets a flag.
    timer = fig.canvas.new_timer(interval=100)
    timer.add_callback(on_timer)
    timer.start()
    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        if ns.web is not None:
            from matplotlib.backends.backend_webagg import WebAggApplication

            try:
                WebAggApplication.initialize()  # binds the port now, so a busy one is a clear error
            except SystemExit:
                raise ValueError(f"--web: {ns.host}:{ns.web} is already in use; pick another PORT") from None
            print(f"{PROG}: serving on http://{ns.host}:{ns.web}/ (Ctrl-C to stop)", file=sys.stderr)
        plt.show()
    finally:
        timer.stop()
        if watcher is not None:
            watcher.stop()
        for s, handler in previous.items():
            signal.signal(s, handler)
    return 0


# ------------------------------------------------------------------------------------------ subcommands


def _summary(ns: argparse.Namespace) -> int:
    view = _view(ns)
    if view.per is not None:
        raise ValueError("summary works on events: --per is not supported here")
    _, table = _read(ns.files, data.summary_columns(view))
    rows = data.summarize(table, view)
    if ns.json:
        print(json.dumps(rows, indent=1, default=_json_default))
    else:
        print(format_summary(rows))
    return 0


def _json_default(v: object) -> object:
    return None if isinstance(v, float) and not math.isfinite(v) else str(v)


def format_summary(rows: Sequence[dict[str, object]]) -> str:
    """A fixed-width text table of ``data.summarize`` rows."""
    headers = ("run", "tag", "events", "steps", "first", "last", "min", "@step", "smoothed", "non-finite",
               "events/s", "duration")  # fmt: skip
    body = []
    for r in rows:
        body.append(
            (
                str(r["run"]),
                str(r["tag"]),
                str(r["events"]),
                f"{r['first_step']}..{r['last_step']}",
                _num(r["first"]),
                _num(r["last"]),
                _num(r["min"]),
                "-" if r["min_step"] is None else str(r["min_step"]),
                _num(r["last_smoothed"]),
                str(r["non_finite"]),
                _num(r["events_per_s"], ".4g"),
                _duration(float(r["duration_s"])),
            )
        )
    widths = [max(len(h), *(len(b[i]) for b in body)) if body else len(h) for i, h in enumerate(headers)]
    left = {0, 1}

    def fmt(cells: Sequence[str]) -> str:
        return "  ".join(
            c.ljust(w) if i in left else c.rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=False))
        )

    return "\n".join([fmt(headers), fmt(["-" * w for w in widths]), *(fmt(b) for b in body)]).rstrip()


def _num(v: object, spec: str = ".6g") -> str:
    return "-" if v is None else format(float(v), spec)


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f}s"
    m, s = divmod(round(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s"


def _export(ns: argparse.Namespace) -> int:
    import pyarrow as pa

    view = _view(ns)
    out = Path(ns.out)
    if out.suffix.lower() not in EXPORT_FORMATS:
        raise ValueError(f"{out}: output must end in .csv, .parquet or .feather")
    paths, table = _read(ns.files)
    result = data.export_table(table, view)
    if len(paths) == 1 and "run" in result.column_names:
        result = result.drop_columns(["run"])
    result = result.replace_schema_metadata(None)
    suffix = out.suffix.lower()
    if suffix == ".csv":
        import pyarrow.csv as pcsv

        cols = [c.cast(pa.string()) if pa.types.is_dictionary(c.type) else c for c in result.columns]
        pcsv.write_csv(pa.table(cols, names=result.column_names), out)
    elif suffix == ".parquet":
        import pyarrow.parquet as pq

        pq.write_table(result, out)
    else:
        import pyarrow.feather as feather

        feather.write_feather(result, out, compression="zstd")
    print(f"{out}: {result.num_rows} rows", file=sys.stderr)
    return 0


def _compact(ns: argparse.Namespace) -> int:
    try:
        from lossfmt.writer import compact
    except ImportError as exc:
        raise ImportError(f"compact is unavailable in this lossfmt ({exc})") from None
    for path in data.expand(ns.files):
        before = path.stat().st_size
        compact(path)
        print(f"{path}: {before} -> {path.stat().st_size} bytes", file=sys.stderr)
    return 0


def _import_tb(ns: argparse.Namespace) -> int:
    try:
        from lossfmt.integrations.tensorboard import import_tb
    except ImportError as exc:
        raise ImportError(
            f"import-tb is unavailable ({exc}); install the extra: pip install 'lossfmt[tensorboard]'"
        ) from None
    if not os.path.exists(ns.logdir):
        raise FileNotFoundError(2, "No such file or directory", ns.logdir)
    n = import_tb(ns.logdir, ns.out, overwrite=ns.overwrite)
    print(f"{ns.out}: {n} events imported from {ns.logdir}", file=sys.stderr)
    return 0
