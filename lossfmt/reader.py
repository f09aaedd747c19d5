"""Compatibility re-exports: the reader is `_read` (scan, read, read_pandas) and `_follow` (Follower)."""

from lossfmt._follow import Follower, Update, follow
from lossfmt._read import Scan, read, read_pandas, scan, scan_bytes

__all__ = ["Follower", "Scan", "Update", "follow", "read", "read_pandas", "scan", "scan_bytes"]
