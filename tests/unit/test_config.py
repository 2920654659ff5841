"""exporter.config: defaults, flag-over-env precedence, and one-line errors naming the source."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from exporter import __version__
from exporter.config import DEFAULT_DOCKER_HOST, Config, ConfigError, env_name, parse, parse_duration

REPO = Path(__file__).resolve().parents[2]


def test_defaults() -> None:
    cfg = parse([], {})
    assert cfg == Config(
        listen_host="",
        listen_port=9818,
        telemetry_path="/metrics",
        log_level="info",
        log_format="auto",
        docker_host=DEFAULT_DOCKER_HOST,
        docker_timeout=10.0,
        rootfs="/",
        engine_interval=30.0,
        filesystem_interval=15.0,
        build_cache_interval=300.0,
        build_cache_legacy_interval=3600.0,
        top_n=50,
        scan_interval=300.0,
        scan_budget=600.0,
        scan_workers=0,
    )


def test_env_name_derivation() -> None:
    assert env_name("web.listen-address") == "DOCKER_STORAGE_EXPORTER_WEB_LISTEN_ADDRESS"
    assert env_name("sampler.build-cache.legacy-interval") == (
        "DOCKER_STORAGE_EXPORTER_SAMPLER_BUILD_CACHE_LEGACY_INTERVAL"
    )


def test_env_var_is_used_without_flag() -> None:
    cfg = parse([], {"DOCKER_STORAGE_EXPORTER_WEB_LISTEN_ADDRESS": "127.0.0.1:1111"})
    assert (cfg.listen_host, cfg.listen_port) == ("127.0.0.1", 1111)


def test_flag_beats_env_var() -> None:
    env = {
        "DOCKER_STORAGE_EXPORTER_WEB_LISTEN_ADDRESS": ":1111",
        "DOCKER_STORAGE_EXPORTER_METRICS_TOP_N": "7",
    }
    cfg = parse(["--web.listen-address", ":2222", "--metrics.top-n=3"], env)
    assert cfg.listen_port == 2222
    assert cfg.top_n == 3


def test_flag_beats_a_bad_env_var() -> None:
    # The env value is never looked at when the flag is given, so it cannot fail the start.
    cfg = parse(["--log.level", "debug"], {"DOCKER_STORAGE_EXPORTER_LOG_LEVEL": "loud"})
    assert cfg.log_level == "debug"


def test_docker_host_fallbacks() -> None:
    assert parse([], {}).docker_host == DEFAULT_DOCKER_HOST
    assert parse([], {"DOCKER_HOST": "tcp://10.0.0.1:2376"}).docker_host == "tcp://10.0.0.1:2376"
    env = {"DOCKER_HOST": "tcp://10.0.0.1:2376", "DOCKER_STORAGE_EXPORTER_DOCKER_HOST": "unix:///a.sock"}
    assert parse([], env).docker_host == "unix:///a.sock"
    assert parse(["--docker.host", "unix:///b.sock"], env).docker_host == "unix:///b.sock"


def test_log_level_warn_is_normalised_and_case_insensitive() -> None:
    assert parse(["--log.level", "WARN"], {}).log_level == "warning"
    assert parse(["--log.format", "JSON"], {}).log_format == "json"


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30s", 30), ("5m", 300), ("1h30m", 5400), ("250ms", 0.25), ("15", 15), ("1.5h", 5400), ("2d", 172800)],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["5x", "", "-5s", "1h 30m", "5m30", "s", "1e3"])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


def test_durations_reach_config() -> None:
    cfg = parse(
        [
            "--sampler.engine.interval=1h30m",
            "--sampler.filesystem.interval=250ms",
            "--docker.timeout=15",
            "--sampler.build-cache.interval=0",
            "--sampler.build-cache.legacy-interval=0s",
        ],
        {},
    )
    assert cfg.engine_interval == 5400
    assert cfg.filesystem_interval == pytest.approx(0.25)
    assert cfg.docker_timeout == 15
    assert cfg.build_cache_interval == 0
    assert cfg.build_cache_legacy_interval == 0


@pytest.mark.parametrize(
    ("text", "host", "port"),
    [
        (":9818", "", 9818),
        ("127.0.0.1:9818", "127.0.0.1", 9818),
        ("[::1]:9818", "::1", 9818),
        ("localhost:1", "localhost", 1),
        ("0.0.0.0:65535", "0.0.0.0", 65535),
    ],
)
def test_listen_addresses(text: str, host: str, port: int) -> None:
    cfg = parse(["--web.listen-address", text], {})
    assert (cfg.listen_host, cfg.listen_port) == (host, port)


def test_rootfs_is_normalised(tmp_path: Path) -> None:
    assert parse(["--path.rootfs", f"{tmp_path}/"], {}).rootfs == str(tmp_path)


# Every bad value: (argv, environ, the flag or env var the one-line error must name).
BAD = [
    (["--sampler.engine.interval", "5x"], {}, "--sampler.engine.interval"),
    (["--sampler.engine.interval", "-5s"], {}, "--sampler.engine.interval"),
    (["--sampler.engine.interval", "0"], {}, "--sampler.engine.interval"),
    (["--sampler.filesystem.interval", "0s"], {}, "--sampler.filesystem.interval"),
    (["--docker.timeout", "0ms"], {}, "--docker.timeout"),
    (["--sampler.build-cache.interval", "soon"], {}, "--sampler.build-cache.interval"),
    (["--sampler.build-cache.legacy-interval", "-1h"], {}, "--sampler.build-cache.legacy-interval"),
    (
        [],
        {"DOCKER_STORAGE_EXPORTER_SAMPLER_ENGINE_INTERVAL": "5x"},
        "DOCKER_STORAGE_EXPORTER_SAMPLER_ENGINE_INTERVAL",
    ),
    (["--web.listen-address", "9818"], {}, "--web.listen-address"),
    (["--web.listen-address", "host:99999"], {}, "--web.listen-address"),
    (["--web.listen-address", ":0"], {}, "--web.listen-address"),
    (["--web.listen-address", "::1:9818"], {}, "--web.listen-address"),
    (["--web.listen-address", "nonsense"], {}, "--web.listen-address"),
    (
        [],
        {"DOCKER_STORAGE_EXPORTER_WEB_LISTEN_ADDRESS": "9818"},
        "DOCKER_STORAGE_EXPORTER_WEB_LISTEN_ADDRESS",
    ),
    (["--log.level", "loud"], {}, "--log.level"),
    ([], {"DOCKER_STORAGE_EXPORTER_LOG_LEVEL": "loud"}, "DOCKER_STORAGE_EXPORTER_LOG_LEVEL"),
    (["--log.format", "xml"], {}, "--log.format"),
    (["--web.telemetry-path", "metrics"], {}, "--web.telemetry-path"),
    (["--web.telemetry-path", "/"], {}, "--web.telemetry-path"),
    (["--web.telemetry-path", "/me trics"], {}, "--web.telemetry-path"),
    (["--metrics.top-n", "ten"], {}, "--metrics.top-n"),
    (["--metrics.top-n", "-1"], {}, "--metrics.top-n"),
    (["--metrics.top-n", "2.5"], {}, "--metrics.top-n"),
    ([], {"DOCKER_STORAGE_EXPORTER_METRICS_TOP_N": "x"}, "DOCKER_STORAGE_EXPORTER_METRICS_TOP_N"),
    (["--path.rootfs", "/nonexistent/rootfs/for/test"], {}, "--path.rootfs"),
    (["--path.rootfs", "relative/dir"], {}, "--path.rootfs"),
    (["--docker.host", "/var/run/docker.sock"], {}, "--docker.host"),
    ([], {"DOCKER_HOST": "docker.sock"}, "DOCKER_HOST"),
    # A value with a newline still makes one line.
    ([], {"DOCKER_STORAGE_EXPORTER_LOG_FORMAT": "json\nconsole"}, "DOCKER_STORAGE_EXPORTER_LOG_FORMAT"),
    (["--bogus-flag"], {}, "--bogus-flag"),
    (["--metrics.top-n"], {}, "--metrics.top-n"),
]


@pytest.mark.parametrize(
    ("argv", "environ", "source"), BAD, ids=[" ".join(b[0]) or next(iter(b[1])) for b in BAD]
)
def test_bad_values_raise_one_line_naming_the_source(
    argv: list[str], environ: dict[str, str], source: str
) -> None:
    with pytest.raises(ConfigError) as info:
        parse(argv, environ)
    message = str(info.value)
    assert "\n" not in message and message.strip() == message and message
    assert source in message


def test_error_quotes_the_bad_value() -> None:
    with pytest.raises(ConfigError, match="5x"):
        parse(["--sampler.engine.interval", "5x"], {})


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_STORAGE_EXPORTER_")}
    env["PYTHONPATH"] = str(REPO)
    return subprocess.run(
        [sys.executable, "-m", "exporter", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("args", "flag"),
    [
        (["--web.listen-address", "nonsense"], "--web.listen-address"),
        (["--bogus-flag"], "--bogus-flag"),
        (["--sampler.engine.interval=0"], "--sampler.engine.interval"),
    ],
)
def test_cli_bad_flag_exits_2_with_one_line(args: list[str], flag: str) -> None:
    proc = _cli(*args)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert flag in lines[0]
    assert proc.stdout == ""


def test_cli_version_exits_0() -> None:
    proc = _cli("--version")
    assert proc.returncode == 0, proc.stderr
    assert __version__ in proc.stdout


@pytest.mark.parametrize("host", ["tcp://a b:x", "ssh://user@host", "tcp://host:notaport"])
def test_unusable_docker_host_is_a_config_error(host: str) -> None:
    with pytest.raises(ConfigError, match=r"--docker\.host"):
        parse(["--docker.host", host], {})
