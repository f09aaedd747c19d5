"""The torn-tail rule (spec/FORMAT.md §1.2): whether a message that runs past the end of a file's bytes is
what a crash leaves (a torn tail, dropped by readers, cut by a resume) or damage (LossFormatError, nothing
modified). `_framing` asks it, for the one message its walk could not finish."""

from __future__ import annotations

import re
import struct

from lossfmt import _flatbuf as fb
from lossfmt._errors import corrupt
from lossfmt._flatbuf import CONTINUATION, MAX_METADATA, SCHEMA, i32


def check_incomplete(
    data: bytes, name: str, pos: int, meta_len: int, ends: tuple[bool, bool], base: int
) -> None:
    """The message at `pos` runs past the end of `data`: a torn tail, unless it cannot be the start of a
    message, the file is closed, or whole messages follow it to the end of the file (LossFormatError)."""
    size, (closed, final) = len(data), ends
    if data[pos : pos + 4] != CONTINUATION[: min(4, size - pos)]:
        raise corrupt(name, base + pos, "not an IPC message (no continuation marker)")
    if size - pos >= 8 and (meta_len < 0 or meta_len > MAX_METADATA or meta_len % 8):
        raise corrupt(name, base + pos, f"impossible metadata length {meta_len}")
    if closed:
        raise corrupt(name, base + pos, "a message runs past the end of a closed file")
    after = _messages_after(data, pos) if final else -1
    if after >= 0:
        raise corrupt(
            name,
            base + pos,
            f"its length runs past the end of the file, but whole messages follow it from "
            f"byte {base + after}: a damaged length, not a torn tail",
        )


_FF_RUN = re.compile(rb"\xff+")


def _messages_after(data: bytes, pos: int) -> int:
    """Where, after the incomplete message at `pos`, complete messages start that tile the rest of the file
    (a crash leaves nothing after its torn message: they are later flushes, and the length at `pos` is
    damaged); -1 if none do."""
    at = data.find(CONTINUATION, pos + 8)
    while at >= 0:  # a message starts where a run of FF bytes ends: its metadata length's low byte is not FF
        end = _FF_RUN.match(data, at).end()  # type: ignore[union-attr]  # (data[at] is FF)
        if (end - 4 - pos) % 8 == 0 and _tiles(data, end - 4):
            return end - 4
        at = data.find(CONTINUATION, end)
    return -1


def _tiles(data: bytes, at: int) -> bool:
    """Whether whole content messages run from `at` to the end of `data` (or to an EOS, or to a message cut
    short by the end: a torn tail of their own), at least one of them complete."""
    size, templates, complete = len(data), fb.Templates(), False
    while size - at >= 8:
        meta_len = i32(data, at + 4)[0]
        if data[at : at + 4] != CONTINUATION or meta_len < 0 or meta_len > MAX_METADATA or meta_len % 8:
            return False
        if meta_len == 0 or at + 8 + meta_len > size:
            return complete
        try:
            m = templates.message(data, at, meta_len)
        except (fb.Bad, struct.error):
            return False
        if m.kind == SCHEMA:
            return False
        if m.end > size:
            return complete
        complete, at = True, m.end
    return complete
