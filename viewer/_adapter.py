"""The one place lossview uses a private lossfmt name, until lossfmt exports it.

``lossfmt.read(tags=...)`` selects tags when reading whole files; a followed file's new events arrive as
tables from ``lossfmt.Follower`` and need the same rule. Ask: export ``select_tags`` from ``lossfmt``
(or ``lossfmt.transforms``), then import it from there and delete this module.
"""

from __future__ import annotations

from lossfmt._sources import select_tags  # private: see the module docstring

__all__ = ["select_tags"]
