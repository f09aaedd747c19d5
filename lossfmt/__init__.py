"""lossfmt: log training loss to a compact, crash-safe Apache Arrow file and read it back anywhere."""

from lossfmt._compact import compact, salvage
from lossfmt._errors import (
    FileReplacedError,
    LossfmtError,
    LossFormatError,
    NoSuchFileError,
    UnreadableValueError,
    WriterBusyError,
    WriterClosedError,
)
from lossfmt._export import ExportSummary, export_parquet, hparams
from lossfmt._follow import Follower, Update, follow
from lossfmt._polars import scan_polars
from lossfmt._read import read, read_pandas
from lossfmt._sources import run_labels, run_paths
from lossfmt._writer import LossWriter
from lossfmt.dataset import dataset
from lossfmt.schema import FORMAT_VERSION, run_info

__version__ = "0.1.0"

__all__ = [
    "FORMAT_VERSION",
    "ExportSummary",
    "FileReplacedError",
    "Follower",
    "LossFormatError",
    "LossWriter",
    "LossfmtError",
    "NoSuchFileError",
    "UnreadableValueError",
    "Update",
    "WriterBusyError",
    "WriterClosedError",
    "compact",
    "dataset",
    "export_parquet",
    "follow",
    "hparams",
    "read",
    "read_pandas",
    "run_info",
    "run_labels",
    "run_paths",
    "salvage",
    "scan_polars",
]
