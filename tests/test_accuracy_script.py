"""`scripts/accuracy.py`, which writes docs/accuracy.md, runs and finds every figure equal."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_accuracy_script_reports_no_difference(tmp_path):
    out = tmp_path / "accuracy.md"
    res = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "accuracy.py"), "--write", str(out)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    text = out.read_text()
    assert "not equal: 0." in text and "**NO**" not in text
    assert text.count("| yes |") > 30
