"""structlog set-up: JSON off a terminal, console on one; stdlib loggers (APScheduler,
urllib3) go through the same renderer so every line has one shape."""

from __future__ import annotations

import logging
import sys
from typing import IO

import structlog


def setup(level: str = "info", fmt: str = "auto", stream: IO[str] | None = None) -> None:
    stream = stream or sys.stderr
    console = fmt == "console" or (fmt == "auto" and stream.isatty())
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: structlog.types.Processor = (
        structlog.dev.ConsoleRenderer(colors=stream.isatty())
        if console
        else structlog.processors.JSONRenderer()
    )
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    final: list[structlog.types.Processor] = [structlog.stdlib.ProcessorFormatter.remove_processors_meta]
    if not console:
        final.append(structlog.processors.format_exc_info)
    final.append(renderer)
    formatter = structlog.stdlib.ProcessorFormatter(foreign_pre_chain=shared, processors=final)
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers = [handler]
    numeric = getattr(logging, level.upper(), logging.INFO)
    root.setLevel(numeric)
    # APScheduler logs every job run at INFO; our samplers already log one line each.
    quiet = logging.DEBUG if numeric <= logging.DEBUG else logging.WARNING
    for name in ("apscheduler", "urllib3", "docker"):
        logging.getLogger(name).setLevel(quiet)
