"""Types of the compiled fast path (lossfmt/_fastadd.c); lossfmt/_compiled.py loads it."""

from typing import Any

class WriterBase:
    _pending: list[Any]
    _wake_at: int
    _ok: bool
    def add(
        self,
        step: int,
        value: Any,
        tag: str = ...,
        count: int = ...,
        epoch: int | None = ...,
        reduction: str = ...,
    ) -> None: ...
    def add_many(
        self,
        step: int,
        values: dict[str, Any],
        *,
        count: int = ...,
        epoch: int | None = ...,
        reduction: str = ...,
    ) -> None: ...

def transpose_rows(rows: list[Any], n: int, /) -> bytes: ...
def configure(
    ids: dict[str, int],
    converters: dict[type, Any],
    values_namespace: dict[str, Any],
    default_tag: str,
    mean: str,
    sum: str,
    one: int,
    row_format: str,
    add_doc: str,
    add_many_doc: str,
    /,
) -> None: ...
