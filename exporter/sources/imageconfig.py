"""An image's config from the Docker root (graphdriver store), read safely and checked.

`image/<driver>/imagedb/content/sha256/<id>` holds the config whose sha256 is the image ID.
Its `history` says, per build step, whether the step made a layer (`empty_layer`): what the
Engine API's history (API 1.41) leaves open when a step made a layer of 0 bytes. The file is
content-addressed, so its bytes are checked against the ID: a file that does not hash to it
(another host's root at the same path, a file being written) is not this image's config.
"""

from __future__ import annotations

import hashlib
import json
import os
import re

from exporter.sources.rawfs import read_regular

LIMIT = 16 * 2**20  # configs are a few KiB; the biggest seen are well under a MiB
_HEX = re.compile(r"[0-9a-f]{64}")


def config_path(root: str, driver: str, image_id: str) -> str | None:
    """Where the config of `image_id` is under the Docker root `root` (as seen here)."""
    hexid = image_id.removeprefix("sha256:")
    if not _HEX.fullmatch(hexid) or not driver or "/" in driver or driver.startswith("."):
        return None
    return os.path.join(root, "image", driver, "imagedb", "content", "sha256", hexid)


def history_empty_layers(root: str, driver: str, image_id: str) -> tuple[bool, ...] | None:
    """Each history entry's `empty_layer` (oldest first), or None if the config is missing,
    unreadable, not this image's, or has no history list."""
    path = config_path(root, driver, image_id)
    if path is None:
        return None
    try:
        data = read_regular(path, LIMIT)
    except OSError:
        return None
    if len(data) > LIMIT or hashlib.sha256(data).hexdigest() != image_id.removeprefix("sha256:"):
        return None
    try:
        history = json.loads(data).get("history")
    except (ValueError, AttributeError, RecursionError):
        return None
    if not isinstance(history, list) or not all(isinstance(h, dict) for h in history):
        return None
    return tuple(h.get("empty_layer") is True for h in history)
