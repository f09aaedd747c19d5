"""The ``lossview`` command: argument parsing and dispatch; errors become one line and an exit status.

``main(argv)`` changes nothing process-global, so programs and tests may call it; ``console_main`` is the
installed ``lossview`` script and ``python -m lossview``, and may tune the process it owns.
"""

from __future__ import annotations

import argparse
import difflib
import gc
import logging
import math
import os
import sys
import threading
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import lossfmt
from lossview import commands, summary
from lossview import view as v
from lossview.options import COMMANDS, DEFAULT_WEB_HOST, MAX_PIXELS, PARSERS, PROG, SIZE
from lossview.sources import compared

#: The status of a command whose output pipe closed early (128 + SIGPIPE, as a shell reports it).
BROKEN_PIPE = 141

# -------------------------------------------------------------------------------------------------- main


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
    if "--" in args:  # parse_intermixed_args loses what follows "--": name such files as paths instead
        at = args.index("--")
        args = args[:at] + [f"./{a}" if a.startswith("-") else a for a in args[at + 1 :]]
    try:
        ns = PARSERS[command]().parse_intermixed_args(args)
    except SystemExit as exc:
        return int(exc.code or 0)
    said: set[str] = set()

    def warn(message: Warning | str, *args: object, **kwargs: object) -> None:
        """Each warning once: a redraw resets Python's own once-per-place registry (a catch_warnings() mutates
        the filters), so a live view said a run's "steps restart each epoch" at every redraw."""
        if str(message) not in said:
            said.add(str(message))
            print(f"{PROG}: warning: {message}", file=sys.stderr)

    with warnings.catch_warnings():
        warnings.simplefilter("default")
        warnings.simplefilter("ignore", ResourceWarning)  # a leak collected meanwhile: not the user's
        warnings.showwarning = warn
        return _run(command, ns)


def console_main() -> int:
    """The ``lossview`` console script (and ``python -m lossview``): ``main()`` in a process it owns.

    Only here, because the process exits right after: a 1 ms thread switch interval lets the file read
    (C++ and numpy, GIL released) overlap the matplotlib import on another thread without its many short
    calls queueing behind the import (0.2-0.3 s of a 10M-event render); and ``gc.freeze()`` before exit
    makes the interpreter's teardown skip collecting every object matplotlib created (about 0.2 s); and
    large arrays on small pages (`_small_pages`).
    """
    sys.setswitchinterval(min(sys.getswitchinterval(), 0.001))
    _small_pages()
    # watchdog logs its own line when its observer stops mid-event; lossview's messages are its own lines
    logging.getLogger("watchdog").addHandler(logging.NullHandler())
    status = main()
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        status = BROKEN_PIPE
    if status == BROKEN_PIPE:  # `lossview summary DIR | head`: no error at the interpreter's own flush
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    gc.freeze()
    return status


def _small_pages() -> None:
    """numpy asks the kernel for transparent huge pages for large arrays. Where the kernel compacts memory to
    find them on first touch (THP defrag "madvise", a common default) a fresh 80 MB array costs 0.1-0.2 s
    instead of 0.05 s here: most of a one-shot command on a 10M-event file. NUMPY_MADVISE_HUGEPAGE, if set,
    wins."""
    if "NUMPY_MADVISE_HUGEPAGE" in os.environ:
        return
    try:
        from numpy._core.multiarray import _set_madvise_hugepage  # type: ignore[attr-defined]
    except ImportError:  # numpy < 2
        from numpy.core.multiarray import _set_madvise_hugepage  # type: ignore[no-redef]
    _set_madvise_hugepage(False)


def _mistyped(word: str) -> bool:
    """A first argument that is no file but close to a command name: say which one was meant."""
    if os.path.exists(word) or set("*?[") & set(word) or word.startswith("-") or word.endswith(".arrow"):
        return False
    close = difflib.get_close_matches(word, COMMANDS, n=1, cutoff=0.6)
    if not close:
        return False
    print(f"{PROG}: error: unknown command {word!r}; did you mean {close[0]!r}?", file=sys.stderr)
    return True


def _run(command: str, ns: argparse.Namespace) -> int:
    """Run a command; the errors a user can fix are one line, anything else is a bug (its traceback)."""
    try:
        return RUNNERS[command](ns)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # the reader of our output left (`| head`): nothing to tell, as other tools
        return BROKEN_PIPE
    except v.OptionError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    except (lossfmt.LossfmtError, v.ViewerError) as exc:
        return _fail(str(exc) + _salvage_hint(exc, ns))
    except OSError as exc:  # a missing path, a permission, a full disk
        return _fail(commands.error_line(exc))


def _mean_title(ns: argparse.Namespace) -> str | None:
    return f"mean of the runs of each {ns.label}" if ns.mean_runs and ns.label else None


def _salvage_hint(exc: Exception, ns: argparse.Namespace) -> str:
    """For damage in a file (never repaired in place): how to keep the events before it."""
    if not isinstance(exc, lossfmt.LossFormatError) or exc.offset is None or getattr(ns, "salvage", None):
        return ""
    return " (`lossview compact FILE --salvage OUT.arrow` copies the events before the damage to a new file)"


def _fail(message: str) -> int:
    print(f"{PROG}: error: {message}", file=sys.stderr)
    return 1


def _view(ns: argparse.Namespace) -> v.View:
    smooth = getattr(ns, "smooth", None)
    view = v.View(
        tags=tuple(ns.tag),
        smooth=v.DEFAULT_SMOOTH if smooth is None else smooth,
        smooth_explicit=smooth is not None,
        per=getattr(ns, "per", None),
        normalize=ns.normalize,
        x=getattr(ns, "x", "step"),
        band=(getattr(ns, "spread", None) or "minmax") if getattr(ns, "band", False) else None,
        mean_runs=getattr(ns, "mean_runs", False),
        keep_rewound=ns.keep_rewound,
        label=getattr(ns, "label", None),
    )
    view.check()
    return view


# -------------------------------------------------------------------------------------------------- plot


def _plot(ns: argparse.Namespace) -> int:
    view = _view(ns)
    _check_plot(ns)
    if ns.term:
        _check_term(ns)
        from lossview import term

        return term.run(
            ns.files,
            tags=view.tags,
            smooth=getattr(ns, "smooth", None),
            follow=ns.follow,
            interval=ns.poll,
            title=ns.title,
            logy=ns.logy,
            ylim=tuple(ns.ylim) if ns.ylim else None,
        )
    # Files are read and checked while matplotlib is imported on another thread: the read is mostly
    # C++ and numpy (no GIL), the import mostly Python, so both cores work; a bad file still fails fast.
    # Nothing on this thread may import matplotlib (lossview.app does) before the read: the import would
    # then run first, on this thread, with nothing to overlap.
    preload = threading.Thread(target=_import_plotting, name="lossview-import", daemon=True)
    preload.start()
    try:
        runs = None if ns.follow else v.load(ns.files, view)
    finally:
        preload.join()
    from lossview import app
    from lossview.plot import Style

    host = DEFAULT_WEB_HOST if ns.host is None else ns.host
    target = app.Target(tuple(ns.files), ns.output, ns.dpi, ns.follow, ns.poll, ns.web, host)

    curves = None
    compare = compared(ns.files)
    if runs is not None:
        commands.require_events(runs, view)
        curves, compare = v.curves(runs, view), len(runs) > 1
    style = Style(
        split=ns.split,
        panels=not ns.one_axes,
        compare=compare and (not ns.mean_runs or ns.label is not None),  # a mean per --label value
        logy=ns.logy,
        ylim=tuple(ns.ylim) if ns.ylim else None,
        title=ns.title if ns.title is not None else _mean_title(ns),
        width=(ns.size or SIZE)[0],
        height=(ns.size or SIZE)[1],
        fixed_size=ns.size is not None,
        local_time=ns.local_time,
    )
    return app.run(target, view, style, curves)


def _check_plot(ns: argparse.Namespace) -> None:
    if ns.poll is not None and not ns.follow:
        raise v.OptionError("--poll only makes sense with --follow")
    if ns.host is not None and ns.web is None:
        raise v.OptionError("--host only makes sense with --web")
    if ns.output and ns.web is not None:
        raise v.OptionError("choose one of -o OUT and --web")
    if ns.ylim and not all(map(math.isfinite, ns.ylim)):
        raise v.OptionError(f"--ylim: LO and HI must be finite numbers (got {ns.ylim[0]:g} {ns.ylim[1]:g})")
    if ns.ylim and not ns.ylim[0] < ns.ylim[1]:
        raise v.OptionError(f"--ylim: LO must be below HI (got {ns.ylim[0]:g} {ns.ylim[1]:g})")
    if ns.ylim and ns.logy and not ns.ylim[0] > 0:
        raise v.OptionError(f"--ylim: LO must be above 0 on a --logy axis (got {ns.ylim[0]:g})")
    w, h = ns.size or SIZE
    if w * h * ns.dpi**2 > MAX_PIXELS or max(w, h) * ns.dpi >= 1 << 16:
        raise v.OptionError(f"--size {w:g} {h:g} at --dpi {ns.dpi} is too many pixels: lower one of them")
    if ns.split and ns.one_axes:
        raise v.OptionError("choose one of --split and --one-axes")
    if ns.local_time and ns.x != "time":
        raise v.OptionError("--local-time is for --x time")
    if ns.spread is not None and not ns.band:
        raise v.OptionError(f"--spread {ns.spread} says what --band shades: add --band")
    if ns.output:
        commands.check_out(Path(ns.output), (".png", ".svg", ".pdf"))
        if os.path.isdir(ns.output):  # found before drawing, not when the drawing replaces it
            raise v.OptionError(f"{ns.output}: is a directory; name the file: OUT.png, OUT.svg or OUT.pdf")


#: What `--term` draws is raw per-step curves of the tags asked for, smoothed as asked: every other option
#: of the picture (option -> its namespace name) is refused with it rather than silently ignored.
_NOT_WITH_TERM = {
    "-o": "output",
    "--web": "web",
    "--per": "per",
    "--normalize": "normalize",
    "--x": "x",
    "--local-time": "local_time",
    "--label": "label",
    "--split": "split",
    "--one-axes": "one_axes",
    "--band": "band",
    "--spread": "spread",
    "--mean-runs": "mean_runs",
    "--size": "size",
    "--dpi": "dpi",
    "--keep-rewound": "keep_rewound",
}


def _check_term(ns: argparse.Namespace) -> None:
    defaults = PARSERS["plot"]()
    given = [opt for opt, dest in _NOT_WITH_TERM.items() if getattr(ns, dest) != defaults.get_default(dest)]
    if given:
        raise v.OptionError(
            f"--term draws per-step curves with --tag, --smooth, --title, --logy, --ylim and --follow only: "
            f"{', '.join(given)} {'is' if len(given) == 1 else 'are'} for the matplotlib views (a window, "
            "an image with -o, or a browser with --web)"
        )


def _import_plotting() -> None:
    import matplotlib.backends.backend_agg  # noqa: F401

    import lossview.app  # noqa: F401  (the figure, its artists and the follow loop)


# ------------------------------------------------------------------------------------------ subcommands


def _summary(ns: argparse.Namespace) -> int:
    return summary.summary(ns.files, _view(ns), as_json=ns.json)


def _export(ns: argparse.Namespace) -> int:
    if ns.format == "parquet":
        return commands.export_parquet(ns.files, ns.out, _view(ns))
    return commands.export(ns.files, ns.out, _view(ns), overwrite=ns.overwrite)


def _compact(ns: argparse.Namespace) -> int:
    if ns.salvage is not None:
        if len(ns.files) != 1:
            raise v.OptionError("--salvage copies one damaged FILE: give exactly one")
        return commands.salvage(ns.files[0], ns.salvage)
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
