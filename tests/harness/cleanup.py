"""Stop any private test daemon left behind (e.g. pytest killed), whatever the outcome.

`make test` runs this after pytest; it only touches daemons whose socket lives under the
test root, and processes chrooted into this checkout's trixie rootfs, never the user's own.
"""

from __future__ import annotations

import os
from pathlib import Path

from tests.harness.engine import PrivateEngine, default_test_root, unmount_all
from tests.harness.trixie import kill_chrooted

TEST_ROOT = Path(os.environ.get("DSE_TEST_ROOT") or default_test_root())


def main() -> None:
    if not TEST_ROOT.is_dir():
        return
    for base in sorted(p for p in TEST_ROOT.iterdir() if p.is_dir()):
        PrivateEngine(base).kill_stale()
    # The trixie engines (tests/harness/trixie.py): everything chrooted into this checkout's
    # rootfs copy is ours, with its descendants (the containers).
    kill_chrooted(TEST_ROOT / "tx")
    unmount_all(TEST_ROOT)


if __name__ == "__main__":
    main()
