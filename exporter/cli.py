"""Command line: parse and validate flags, set up logs, run until SIGTERM/SIGINT."""

from __future__ import annotations

import logging
import os
import select
import signal
import sys
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

    wait_for_signal(log)
    app.stop()
    # A sampler thread may still be inside a walk or a request; it holds nothing that needs
    # flushing, so do not let the interpreter wait for it at exit.
    logging.shutdown()
    os._exit(0)


def wait_for_signal(log: structlog.stdlib.BoundLogger) -> None:
    """Return once SIGTERM or SIGINT has come, whichever thread the kernel gave it to.

    A process-directed signal goes to any thread that does not block it, often a busy one
    (the scan's). Python runs handlers in the main thread only, and a main thread asleep on a
    lock (an untimed Event.wait) is not woken by a signal another thread took: it would sleep
    on. So it sleeps on the wakeup fd, which the C-level handler writes in any thread."""
    stop: list[str] = []

    def on_signal(signum: int, _frame: object) -> None:
        stop.append(signal.Signals(signum).name)

    r, w = os.pipe()
    os.set_blocking(r, False)
    os.set_blocking(w, False)
    signal.set_wakeup_fd(w, warn_on_full_buffer=False)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    woken = select.poll()
    woken.register(r, select.POLLIN)
    while not stop:
        woken.poll()  # the handler runs in this thread as this call returns
        try:
            os.read(r, 512)
        except BlockingIOError:
            pass
    log.info("signal received, stopping", signal=stop[0])


if __name__ == "__main__":
    sys.exit(main())
