"""Compatibility name for ``lossview.view`` (``lossview.notebook`` still imports it); new code uses view."""

from lossview.view import DEFAULT_SMOOTH, FEW_POINTS, Curve, View

__all__ = ["DEFAULT_SMOOTH", "FEW_POINTS", "Curve", "View"]
