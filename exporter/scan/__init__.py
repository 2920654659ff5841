"""The scan: a store reader's layout -> a plan of walks -> the walk -> the attribution.

`sampler` runs the pass; `plan`, `cache` and `attribute` are its parts, each testable alone,
none of them knowing a storage layout (exporter.stores does).
"""

from exporter.config import Config
from exporter.scan.plan import BYTES_PER_FILE
from exporter.scan.sampler import LOCAL_BELOW_FILES, ScanSampler
from exporter.stores.inventory import StoreOptions

__all__ = ["BYTES_PER_FILE", "LOCAL_BELOW_FILES", "ScanSampler", "store_options"]


def store_options(config: Config) -> StoreOptions:
    """What the flags say about where the stores are."""
    return StoreOptions(config.rootfs, config.containerd_root, config.containerd_namespace)
