"""Ending a daemon the harness started: SIGTERM, a bounded wait, then SIGKILL of its whole
process group (a dockerd's containerd and shims, a containerd's shims), a bounded wait."""

from __future__ import annotations

import os
import signal
import subprocess


def end(proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        pass
