"""Python code in a real subprocess that file permissions bind: as root, without its power to override them
(setpriv drops CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH); the test is skipped where that is not possible."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest


def run(code: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run Python `code` with `args` as sys.argv[1:], its output captured as text."""
    command = [sys.executable, "-c", code, *args]
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("running as root without setpriv: permissions cannot be enforced")
        command = [setpriv, "--bounding-set=-dac_override,-dac_read_search", *command]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout)
