"""lossfmt: log training loss to a compact, crash-safe Apache Arrow file and read it back anywhere."""

from lossfmt.dataset import dataset
from lossfmt.reader import Follower, Update, follow, read, read_pandas
from lossfmt.schema import FORMAT_VERSION, LossFormatError
from lossfmt.writer import LossWriter

__version__ = "0.1.0"

__all__ = [
    "FORMAT_VERSION",
    "Follower",
    "LossFormatError",
    "LossWriter",
    "Update",
    "dataset",
    "follow",
    "read",
    "read_pandas",
]
