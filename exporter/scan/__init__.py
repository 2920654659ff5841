"""The scan: a store reader's layout -> a plan of walks -> the walk -> the attribution.

`sampler` runs the pass; `plan`, `cache` and `attribute` are its parts, each testable alone,
none of them knowing a storage layout (exporter.stores does).
"""

from exporter.scan.plan import BYTES_PER_FILE
from exporter.scan.sampler import LOCAL_BELOW_FILES, ScanSampler

__all__ = ["BYTES_PER_FILE", "LOCAL_BELOW_FILES", "ScanSampler"]
