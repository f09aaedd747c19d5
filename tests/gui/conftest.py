"""Fixtures for the GUI tests: a private virtual X screen and the Chromium executable."""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest
from guiharness import Xvfb, chromium_path, has_tkinter, require
from PIL import features


@pytest.fixture
def xvfb() -> Iterator[Xvfb]:
    """A fresh virtual screen (skipped, or failed in CI, when Xvfb or tkinter is missing)."""
    require(shutil.which("Xvfb") is not None, "Xvfb is not installed (apt install xvfb)")
    require(has_tkinter(), "tkinter is not available (apt install python3-tk)")
    require(features.check("xcb"), "Pillow was built without XCB: it cannot take X screenshots")
    with Xvfb() as screen:
        yield screen


@pytest.fixture
def chromium() -> str:
    """The Chromium executable (skipped, or failed in CI, when missing)."""
    path = chromium_path()
    require(path is not None, "Chromium is not installed (apt install chromium)")
    return path
