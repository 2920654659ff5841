"""Command line: parse and validate flags, set up logs, run until SIGTERM/SIGINT."""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence

import structlog

from exporter import logs
from exporter.config import ConfigError, parse

PROG = "docker-storage-exporter"


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    report = bool(argv) and argv[0] == "report"
    as_json = False
    if report:
        # `report [--json] [flags]`: the same flags, the samplers once, a summary for a person.
        argv = argv[1:]
        as_json = "--json" in argv
        argv = [a for a in argv if a != "--json"]
    try:
        config = parse(argv)
    except ConfigError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    if report:
        # Logs would interleave with the report: only warnings, on stderr.
        logs.setup(
            "warning" if config.log_level in ("info", "debug") else config.log_level, config.log_format
        )
        from exporter import report as report_cmd

        return report_cmd.run(config, as_json)
    logs.setup(config.log_level, config.log_format)
    log = structlog.get_logger("exporter")

    from exporter.app import App  # after logging is set up

    app = App(config)
    try:
        app.start()
    except OSError as exc:
        print(
            f"{PROG}: error: cannot listen on {config.listen_host or '*'}:{config.listen_port}: "
            f"{exc.strerror or exc}; pick another --web.listen-address",
            file=sys.stderr,
        )
        app.stop()
        return 1

    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        log.info("signal received, stopping", signal=signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    stop.wait()
    app.stop()
    # A sampler thread may still be inside a walk or a request; it holds nothing that needs
    # flushing, so do not let the interpreter wait for it at exit.
    logging.shutdown()
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main())
