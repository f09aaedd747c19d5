"""The ``lossview`` command line's parsers: one per subcommand, sharing the data options."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable, Sequence
from typing import NoReturn

from lossview import view as v

PROG = "lossview"
COMMANDS = ("plot", "summary", "export", "compact", "import-tb")
DEFAULT_WEB_PORT = 8988
DEFAULT_WEB_HOST = "127.0.0.1"
INT64_MAX = 2**63 - 1

DESCRIPTION = """\
Plot lossfmt training-loss files (.arrow), live or to an image.

commands (the first argument; plain `lossview FILE...` plots):
  lossview [plot] FILE...          plot one run or compare several (files, globs or directories)
  lossview summary FILE...         a table per run and tag: hparams, events, steps, first/last/min/max, rate
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


#: Ranges that keep a figure drawable in memory (Agg draws at most 2**16 pixels a side; 2**27 is 512 MiB).
MAX_DPI = 2400
#: Below about 6 dpi FreeType cannot size the smallest labels (a traceback from savefig): 10 is a thumbnail.
MIN_DPI = 10
MAX_INCHES = 200.0
MAX_PIXELS = 1 << 27
#: The figure's size in inches without --size (its height grows for a second panel; a --size is kept).
SIZE = (8.0, 4.5)


def _dpi(text: str) -> int:
    try:
        dpi = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number of dots per inch: {text!r}") from None
    if not MIN_DPI <= dpi <= MAX_DPI:
        raise argparse.ArgumentTypeError(f"must be from {MIN_DPI} to {MAX_DPI} dots per inch, not {dpi}")
    return dpi


def _inches(text: str) -> float:
    try:
        inches = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of inches: {text!r}") from None
    if not 0 < inches <= MAX_INCHES:  # also NaN and inf
        raise argparse.ArgumentTypeError(f"must be above 0 and at most {MAX_INCHES:g} inches, not {text}")
    return inches


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"a port is 1..65535, not {port}")
    return port


def _tag(text: str) -> str:
    if not text:  # lossfmt refuses it later, as a traceback (or, following, waits for it forever)
        raise argparse.ArgumentTypeError("an empty GLOB matches no tag (lossfmt tags are never empty)")
    return text


def _out(text: str) -> str:
    if not text:  # `-o ''` read as no -o at all, `export FILE ''` as the directory '.'
        raise argparse.ArgumentTypeError("empty output path: name the file to write")
    return text


def _transform_options(p: argparse.ArgumentParser, *, per: bool = True) -> None:
    g = p.add_argument_group("data")
    g.add_argument(
        "--tag",
        action="append",
        default=[],
        type=_tag,
        metavar="GLOB",
        help="only tags matching GLOB (repeatable; e.g. --tag loss --tag 'val/*'); default: every tag",
    )
    g.add_argument(
        "--smooth",
        metavar="SPEC",
        help="span:F (an EMA whose time constant is the fraction F of the plotted step span, 0<F<=1), "
        "steps:N (an EMA with a time constant of N steps), ema:W (TensorBoard's debiased EMA, 0<=W<1), "
        "ma:N (trailing moving average of N points) or none. "
        f"Default {v.DEFAULT_SMOOTH} on per-step curves; {'bucketed (--per) curves and ' if per else ''}"
        f"tags of <= {v.FEW_POINTS} points in every run, and noise-free ones (an lr schedule), stay "
        "unsmoothed unless --smooth is given. A plot "
        "smooths its runs alike (one span, one rule per tag); summary and export smooth each run by itself",
    )
    g.add_argument(
        "--normalize",
        choices=["per-item"],
        help="per-item averages: mean-reduced values weighted by count, sum-reduced divided by count",
    )
    if per:
        g.add_argument("--per", type=_per, metavar="epoch|N", help="aggregate per epoch or per N steps")
    g.add_argument(
        "--keep-rewound",
        action="store_true",
        help="keep events orphaned by a resumed run's rewind (default: drop them as TensorBoard purges: "
        "where a tag's step goes back, its earlier events at that step or later; run-wide steps where "
        "steps restart each epoch: spec/FORMAT.md, rewinds)",
    )


def _plot_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog=PROG,
        usage="%(prog)s [plot] FILE... [options]\n       %(prog)s {summary,export,compact,import-tb} ...",
        description=DESCRIPTION,
        epilog=PLOT_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "files", nargs="+", metavar="FILE", help=".arrow files, globs or directories of .arrow files"
    )
    p.add_argument("--version", action=_Version, help="show the installed version and exit")
    _transform_options(p)
    _view_options(p)
    _output_options(p)
    return p


def _view_options(p: argparse.ArgumentParser) -> None:
    vg = p.add_argument_group("view")
    vg.add_argument(
        "--x",
        choices=v.X_AXES,
        default="step",
        help="x axis: step, items (the run's items seen by the step, e.g. samples or tokens: the "
        "cumulative count of its most-logged tag, the training loss, whatever --tag draws), "
        "epoch (fractional: the "
        "k-th of the n steps the run logged in epoch e is at e+k/n), time (wall clock, UTC; --local-time "
        "for yours) or relative (time since the run's first event); default step. One step is at one x "
        "for every tag of a run; "
        "a --per bucket is drawn at the run's last step in it",
    )
    vg.add_argument("--local-time", action="store_true", help="--x time in the local time zone, not UTC")
    vg.add_argument(
        "--label",
        metavar="KEY",
        help="name and colour compared runs by a hyperparameter of their metadata (e.g. --label lr; the runs "
        "of one value in its colour, told apart by markers); with --mean-runs, one mean per value of it (the "
        "seeds of each setting of a sweep averaged apart)",
    )
    vg.add_argument(
        "--split",
        action="store_true",
        help="one axes per tag (default: tags share the axes, except one 50x or more apart in scale, such as "
        "an lr beside a loss, which gets a panel of its own)",
    )
    vg.add_argument(
        "--one-axes", action="store_true", help="every tag on one axes, whatever their scales (no panels)"
    )
    vg.add_argument(
        "--band",
        action="store_true",
        help="shade the spread: each bucket's with --per, across runs with --mean-runs",
    )
    vg.add_argument(
        "--spread",
        choices=v.BANDS,
        help="what --band shades: minmax (default) or std (mean +/- one standard deviation)",
    )
    vg.add_argument(
        "--mean-runs",
        action="store_true",
        help="one curve per tag: the mean across all runs given (seeds of a sweep, ranks of a job), per "
        "--per bucket, else on the union of the runs' steps (each run interpolated within its own steps)",
    )
    _axis_options(vg)


def _axis_options(vg: argparse._ArgumentGroup) -> None:
    """The y axis and the figure's size, of the view options."""
    vg.add_argument(
        "--logy", action="store_true", help="logarithmic y axis (an lr keeps its panel, below the loss's)"
    )
    vg.add_argument(
        "--ylim",
        nargs=2,
        type=float,
        metavar=("LO", "HI"),
        help="fixed y range of the loss's panel (with --split: of each tag of the loss's scale; with "
        "--one-axes: of the one axes); an lr on a panel of its own keeps its range",
    )
    vg.add_argument("--title", help="figure title (default: the run name, or 'N runs')")
    vg.add_argument(
        "--size",
        nargs=2,
        type=_inches,
        metavar=("W", "H"),
        help="inches, kept whatever the panels (default 8 4.5, taller for a second panel)",
    )
    vg.add_argument(
        "--dpi", type=_dpi, default=150, help=f"resolution of PNG output, {MIN_DPI}..{MAX_DPI} (default 150)"
    )


def _output_options(p: argparse.ArgumentParser) -> None:
    o = p.add_argument_group("output")
    o.add_argument(
        "-o", "--output", type=_out, metavar="OUT", help="write OUT.png|.svg|.pdf instead of opening a window"
    )
    o.add_argument(
        "--follow", "-f", action="store_true", help="keep watching the files and redraw as they grow"
    )
    o.add_argument(
        "--term", action="store_true", help="draw in the terminal (braille cells); live with --follow"
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
    o.add_argument("--host", help=f"address --web binds to (default {DEFAULT_WEB_HOST})")


def _summary_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog=f"{PROG} summary",
        description="Per run and tag: the run's hyperparameters (metadata), events, step range, first, "
        "last, min and its step, max, last smoothed value, non-finite count, events/s and duration.",
    )
    p.add_argument("files", nargs="+", metavar="FILE")
    _transform_options(p, per=False)  # a summary is of events, not buckets
    p.add_argument(
        "--json",
        action="store_true",
        help="print JSON (one object per run and tag, with hparams) instead; NaN and inf are null",
    )
    return p


def _export_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog=f"{PROG} export",
        description="Write the rows the plot would draw (after --tag/--normalize/--per, with a `smoothed` "
        "column) to CSV, Parquet or Feather. Several files add a `run` column.",
    )
    p.add_argument("files", nargs="+", metavar="FILE")
    p.add_argument("out", type=_out, metavar="OUT", help="OUT.csv, OUT.parquet or OUT.feather")
    p.add_argument(
        "--format",
        choices=("rows", "parquet"),
        default="rows",
        help="rows (default): the plotted rows, in the format OUT's suffix names; parquet: every event of "
        "every run with its run metadata (hparams) as columns, for pandas, DuckDB, Spark, Trino, BigQuery "
        "and Polars: OUT.parquet is one file, any other OUT a directory of one file per run, updated "
        "incrementally (only new or changed runs are rewritten)",
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an existing OUT file (never one of the inputs or another lossfmt run)",
    )
    _transform_options(p)
    return p


def _compact_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog=f"{PROG} compact",
        description="Compact live or crashed files into footer'd Arrow IPC files (readable by pandas, "
        "Polars, pyarrow.dataset). Keeps every complete event and the run id; drops a torn tail. A "
        "damaged (corrupt) file is refused and left as it is; --salvage OUT copies its readable prefix.",
    )
    p.add_argument("files", nargs="+", metavar="FILE")
    p.add_argument(
        "--salvage",
        type=_out,
        metavar="OUT",
        help="for one damaged FILE: copy the events before the damage into a new closed file OUT "
        "(FILE is never modified)",
    )
    return p


def _import_tb_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog=f"{PROG} import-tb",
        description="Convert TensorBoard tfevents scalars (every point; tags, steps and wall times kept) "
        "to lossfmt. LOGDIR is one run, a tree of runs or one event file; OUT is one .arrow file (one run) "
        "or a directory receiving <run>.arrow per run.",
    )
    p.add_argument("logdir", metavar="LOGDIR")
    p.add_argument(
        "out",
        type=_out,
        metavar="OUT",
        help="OUT.arrow, or a directory for several runs (an existing one, or a new name without a suffix or "
        "ending in /)",
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace output files an earlier import-tb wrote (never a training run or any other file)",
    )
    return p


class _Parser(argparse.ArgumentParser):
    """argparse with one-line usage errors (a bad option is a line and status 2, as every other error is a
    line and status 1): the usage banner it would print first is what ``--help`` shows."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


class _Version(argparse.Action):
    """``--version``, looked up only when asked for (importlib.metadata costs every command 20-30 ms)."""

    def __init__(
        self, option_strings: Sequence[str], dest: str = argparse.SUPPRESS, help: str | None = None
    ) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, help=help)

    def __call__(self, parser: argparse.ArgumentParser, *_: object) -> None:
        print(f"{parser.prog} {_version()}")  # on stdout, as argparse's own version action prints
        parser.exit()


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("lossfmt")
    except Exception:  # not installed as a distribution
        return "unknown"


PARSERS: dict[str, Callable[[], argparse.ArgumentParser]] = {
    "plot": _plot_parser,
    "summary": _summary_parser,
    "export": _export_parser,
    "compact": _compact_parser,
    "import-tb": _import_tb_parser,
}
