"""lossfmt: log training loss to a compact, crash-safe Apache Arrow file and read it back anywhere."""

from lossfmt._errors import (
    FileReplacedError,
    LossfmtError,
    LossFormatError,
    WriterBusyError,
    WriterClosedError,
)
from lossfmt._follow import Follower, Update, follow
from lossfmt._read import read, read_pandas
from lossfmt._sources import run_labels, run_paths
from lossfmt.dataset import dataset
from lossfmt.schema import FORMAT_VERSION, run_info
from lossfmt.writer import LossWriter, compact

__version__ = "0.1.0"

__all__ = [
    "FORMAT_VERSION",
    "FileReplacedError",
    "Follower",
    "LossFormatError",
    "LossWriter",
    "LossfmtError",
    "Update",
    "WriterBusyError",
    "WriterClosedError",
    "compact",
    "dataset",
    "follow",
    "read",
    "read_pandas",
    "run_info",
    "run_labels",
    "run_paths",
]
