"""`scripts/accuracy.py`, which writes docs/accuracy.md, runs and finds every figure equal, in
each of its three sections: Docker 20.10 overlay2, Docker 26.1 overlay2, Docker 26.1 with the
containerd image store."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ROWS = re.compile(r"^Rows: (\d+), not equal: (\d+)\.$", re.M)

# Each section's title says its engine; each holds at least these rows (the seeds make more),
# and these figures.
SECTIONS = [
    (("Docker 20.10", "overlay2"), 100, ("layerdb `size`", "SizeRw", "Images SIZE (bytes)")),
    (("Docker 26.1", "API 1.45", "overlay2"), 110, ("layerdb `size`", "SizeRw", "container dse-logs logs")),
    (
        ("Docker 26.1", "API 1.45", "containerd image store"),
        140,
        (
            "`ctr snapshots usage -b`",
            "`ctr snapshots mounts`",
            "owners' sum",
            "orphan dirs",
            "owner `orphan`",
            "content `layer`",
            "content store allocated",
            "Containers SIZE (bytes)",
        ),
    ),
]


# The trixie engines may need the rootfs debootstrapped first (tests/harness/trixie.py).
@pytest.mark.timeout(900)
def test_accuracy_script_reports_no_difference(tmp_path):
    out = tmp_path / "accuracy.md"
    res = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "accuracy.py"), "--write", str(out)],
        capture_output=True, text=True, timeout=840,
    )  # fmt: skip
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    text = out.read_text()
    assert "**NO**" not in text
    head, *sections = re.split(r"^## ", text, flags=re.M)
    assert len(sections) == len(SECTIONS), [s.splitlines()[0] for s in sections]
    total = 0
    for i, (section, (words, at_least, figures)) in enumerate(zip(sections, SECTIONS, strict=True), 1):
        title = section.splitlines()[0]
        assert title.startswith(f"{i}. ") and all(w in title for w in words), title
        (rows, bad), *more = ROWS.findall(section)
        assert not more and bad == "0", title
        # Equal, or within the tolerance its row states: only a layer's apparent bytes have one
        # (Docker records a BuildKit layer's symlinks as 0 bytes), and only by those bytes.
        within = re.findall(r"^\| (.*?) \|.*\| within (\d+) \(([+-]\d+)\) \|$", section, re.M)
        assert all(w.startswith("layer ") and w.endswith(" apparent") for w, _, _ in within), within
        assert section.count("| yes |") + len(within) == int(rows) >= at_least, (title, rows)
        for figure in figures:
            assert figure in section, (title, figure)
        assert f"{title}: {rows} rows, not equal: 0." in head
        total += int(rows)
    assert f"Rows: {total}, not equal: 0." in head
