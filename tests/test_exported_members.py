"""The public surface is exactly what `__all__` names, and importing lossfmt stays light."""

from __future__ import annotations

import subprocess
import sys

import lossfmt


def test_public_names_are_pinned_to_all():
    public = {name for name in vars(lossfmt) if not name.startswith("_")}
    modules = {name for name in public if type(getattr(lossfmt, name)).__name__ == "module"}
    assert public - modules == set(lossfmt.__all__)


def test_every_exported_name_exists():
    for name in lossfmt.__all__:
        assert getattr(lossfmt, name) is not None


def test_import_lossfmt_never_imports_heavy_libraries():
    heavy = ["matplotlib", "watchdog", "pandas", "torch", "tensorflow", "jax", "keras", "lightning", "polars"]
    code = (
        f"import sys, lossfmt\nloaded = [m for m in {heavy!r} if m in sys.modules]\nprint(','.join(loaded))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
