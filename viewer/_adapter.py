"""The one place lossview uses private lossfmt names, until lossfmt exports them.

- ``select_tags``: ``lossfmt.read(tags=...)`` selects tags when reading whole files; a followed file's new
  events arrive as tables from ``lossfmt.Follower`` and need the same rule.
- ``array`` / ``to_numpy``: numpy <-> Arrow without ``pa.array()``/``to_numpy()``, which in pyarrow 26 import
  pandas on their first call (half a second of every command).

Ask: export these from ``lossfmt`` (or ``lossfmt.transforms``), then import them from there and delete this
module.
"""

from __future__ import annotations

from lossfmt._arrow import array, to_numpy  # private: see the module docstring
from lossfmt._sources import select_tags  # private: see the module docstring

__all__ = ["array", "select_tags", "to_numpy"]
