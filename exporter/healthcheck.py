"""`python -m exporter.healthcheck`: the image's HEALTHCHECK. Exit 0 if /healthz answers.

It finds the listen address the way the exporter did: the flags of the container's main
process (PID 1), then the environment variable, then the default; so a changed port needs
no second setting.
"""

from __future__ import annotations

import os
import sys
import urllib.request

from exporter.config import env_name, parse_listen_address

FLAG = "--web.listen-address"


def listen_address(cmdline: list[str], environ: dict[str, str]) -> str:
    for i, arg in enumerate(cmdline):
        if arg.startswith(FLAG + "="):
            return arg.split("=", 1)[1]
        if arg == FLAG and i + 1 < len(cmdline):
            return cmdline[i + 1]
    return environ.get(env_name("web.listen-address"), ":9818")


def main_cmdline() -> list[str]:
    try:
        with open("/proc/1/cmdline", "rb") as f:
            return [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
    except OSError:
        return []


def main() -> int:
    raw = listen_address(main_cmdline(), dict(os.environ))
    try:
        host, port = parse_listen_address(raw)
    except ValueError:
        print(f"healthcheck: cannot read listen address {raw!r}", file=sys.stderr)
        return 1
    if host in ("", "0.0.0.0", "::"):
        host = "127.0.0.1"
    url = f"http://{'[' + host + ']' if ':' in host else host}:{port}/healthz"
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return 0 if r.status == 200 else 1
    except OSError as exc:
        print(f"healthcheck: {url}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
