"""Flags (exporter-toolkit style) and their environment variables, validated once.

Every flag `--a.b-c` can also be set as `DOCKER_STORAGE_EXPORTER_A_B_C`; a flag on the
command line wins over the environment. A bad value raises `ConfigError` with one line that
names the flag and says how to fix it; the CLI prints it and exits 2.
"""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import docker.errors
import docker.utils

from exporter import __version__
from exporter.sources.desktop import given, host_system
from exporter.sources.enginetls import EngineTLS
from exporter.sources.enginetls import from_env as tls_from_env
from exporter.webconfig import WebConfig, WebConfigError
from exporter.webconfig import load as load_web_config

ENV_PREFIX = "DOCKER_STORAGE_EXPORTER_"
DEFAULT_DOCKER_HOST = "unix:///var/run/docker.sock"


class ConfigError(Exception):
    """A bad flag or environment value; str() is the one line to show."""


@dataclass(frozen=True)
class Config:
    listen_host: str
    listen_port: int
    telemetry_path: str
    log_level: str
    log_format: str  # "json" | "console" | "auto"
    docker_host: str
    docker_timeout: float
    rootfs: str
    engine_interval: float
    filesystem_interval: float
    build_cache_interval: float  # 0 = off
    build_cache_legacy_interval: float  # 0 = off
    top_n: int
    scan_interval: float  # 0 = off
    scan_budget: float
    scan_workers: int  # 0 = one per CPU
    # Web security (docs/security.md); defaults so that other code may build a Config by hand.
    web_config: WebConfig | None = None  # --web.config.file: TLS, basic auth, headers
    max_requests: int = 64  # concurrent requests served; 0 = unlimited
    read_header_timeout: float = 10.0  # seconds for a client's TLS handshake and request headers
    hide_names: bool = False  # image, container and volume names left out of labels
    containerd_root: str = ""  # host path; "" = found from the engine
    containerd_namespace: str = ""
    docker_tls: EngineTLS | None = None  # tcp:// engines: DOCKER_TLS_VERIFY, DOCKER_CERT_PATH
    desktop_disk_image: str = ""  # Docker Desktop's VM disk image (or its dir); "" = found
    desktop_interval: float = 60.0  # 0 = off
    registry_roots: tuple[str, ...] = ()  # --registry.root: Distribution filesystem roots; () = off
    registry_interval: float = 300.0  # 0 = off


# name, default, help. The name is the flag without "--"; the env var derives from it.
FLAGS: list[tuple[str, str, str]] = [
    ("web.listen-address", ":9818", "Address to listen on for the web interface and telemetry."),
    ("web.telemetry-path", "/metrics", "Path under which to expose metrics."),
    (
        "web.config.file",
        "",
        "Path to a web config file (exporter-toolkit format) with TLS, basic auth and extra "
        "headers; see docs/security.md.",
    ),
    (
        "web.max-requests",
        "64",
        "Requests served at the same time; more are answered 503 at once. 0 = unlimited.",
    ),
    (
        "web.read-header-timeout",
        "10s",
        "Time a client has to finish its TLS handshake and send its request headers; idle "
        "keep-alive connections are closed after it too.",
    ),
    (
        "log.level",
        "info",
        "Only log messages with the given severity or above: debug, info, warn, error.",
    ),
    (
        "log.format",
        "auto",
        "Log format: json, console, or auto (console on a terminal, else json).",
    ),
    (
        "docker.host",
        "",
        "Engine API address (unix:///path or tcp://host:port); default $DOCKER_HOST, "
        f"else {DEFAULT_DOCKER_HOST}. TLS follows DOCKER_TLS_VERIFY and DOCKER_CERT_PATH.",
    ),
    ("docker.timeout", "10s", "Timeout of each Engine API request."),
    ("path.rootfs", "/", "Where the host's / is mounted, when running in a container."),
    (
        "containerd.root",
        "",
        "containerd's root dir (host path) for the containerd image store; default: Docker's own "
        "(<DockerRootDir>/containerd/daemon), else /var/lib/containerd.",
    ),
    (
        "containerd.namespace",
        "",
        "Docker's namespace in containerd; default: what the engine says (API 1.46+), else moby.",
    ),
    (
        "desktop.disk-image",
        "",
        "Docker Desktop's VM disk image on this host (Docker.raw, Docker.qcow2, a .vhdx) or the "
        "dir holding it, instead of finding it in Desktop's settings and default places. Only "
        "stat'ed, never opened.",
    ),
    ("sampler.engine.interval", "30s", "How often to sample the Engine API."),
    ("sampler.filesystem.interval", "15s", "How often to statvfs the Docker root's filesystem."),
    (
        "sampler.build-cache.interval",
        "5m",
        "How often to sample the build cache; 0 switches it off.",
    ),
    (
        "sampler.build-cache.legacy-interval",
        "1h",
        "On engines older than API 1.42 the build cache needs a full /system/df (dockerd walks "
        "every volume and container layer): run it at most this often; 0 switches it off.",
    ),
    (
        "sampler.scan.interval",
        "5m",
        "How often to walk the Docker root (image layers are walked once and cached); 0 switches it off.",
    ),
    (
        "sampler.scan.budget",
        "10m",
        "A scan that takes longer stops, keeps the last good figures and says so.",
    ),
    ("sampler.scan.workers", "0", "Processes walking directories in parallel; 0 = one per CPU."),
    (
        "sampler.desktop.interval",
        "1m",
        "How often to stat Docker Desktop's VM disk image on this host (nothing is served where "
        "there is none); 0 switches it off.",
    ),
    (
        "registry.root",
        "",
        "A Distribution registry's filesystem storage to measure, read-only: the dir its "
        "storage.filesystem.rootdirectory names (holding docker/registry/v2), as this process "
        "sees it. Repeatable; in the environment, comma-separated. Off when not given.",
    ),
    (
        "sampler.registry.interval",
        "5m",
        "How often to read the --registry.root trees (blob sizes and manifests are read once "
        "and cached); 0 switches it off.",
    ),
    (
        "metrics.top-n",
        "50",
        "Per-item families keep the N biggest items and fold the rest into __other__.",
    ),
    (
        "metrics.hide-names",
        "false",
        "Leave image repositories and tags, container, volume and registry names out of labels "
        "(a stable hash or the short id instead); ids stay.",
    ),
]


BOOL_FLAGS = {"metrics.hide-names"}
REPEATABLE_FLAGS = {"registry.root"}  # each use adds one value


def env_name(flag: str) -> str:
    return ENV_PREFIX + re.sub(r"[.\-]", "_", flag).upper()


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise ConfigError(f"{message}; see --help")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="docker-storage-exporter",
        allow_abbrev=False,  # --web.listen must not silently mean --web.listen-address
        description="Prometheus exporter for where a Docker host's disk went. "
        "`docker-storage-exporter report [--json] [flags]` samples once and prints a summary.",
        epilog="Every flag can also be set as an environment variable, "
        f"e.g. {env_name('web.listen-address')}.",
    )
    for name, default, doc in FLAGS:
        parser.add_argument(
            f"--{name}",
            dest=name,
            metavar="VALUE",
            default=None,
            # A bare boolean flag means true: `--metrics.hide-names`.
            **({"nargs": "?", "const": "true"} if name in BOOL_FLAGS else {}),
            **({"action": "append"} if name in REPEATABLE_FLAGS else {}),
            help=f"{doc} [env {env_name(name)}] (default: {default or 'see text'})",
        )
    parser.add_argument("--version", action="version", version=f"docker-storage-exporter {__version__}")
    return parser


_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> float:
    """'30s', '5m', '1h30m', '250ms' or plain seconds ('15'). Raises ValueError."""
    text = text.strip()
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return float(text)
    if not text or not re.fullmatch(r"(?:\d+(?:\.\d+)?(?:ms|s|m|h|d))+", text):
        raise ValueError(text)
    return sum(float(n) * _UNITS[u] for n, u in _DURATION.findall(text))


def parse_listen_address(text: str) -> tuple[str, int]:
    """':9818' -> ('', 9818); '127.0.0.1:9818'; '[::1]:9818'. Raises ValueError."""
    m = re.fullmatch(r"(?:\[([0-9a-fA-F:.%\w]+)\]|([^:\[\]]*)):(\d{1,5})", text.strip())
    if not m:
        raise ValueError(text)
    port = int(m.group(3))
    if not 0 < port < 65536:
        raise ValueError(text)
    return (m.group(1) or m.group(2) or ""), port


def parse(argv: Sequence[str], environ: Mapping[str, str] | None = None) -> Config:
    environ = os.environ if environ is None else environ
    args = vars(build_parser().parse_args(list(argv)))

    def value(name: str) -> tuple[str, str]:
        """The raw value and where it came from, for the error message."""
        if args.get(name) is not None:
            return args[name], f"--{name}"
        env = env_name(name)
        if env in environ:
            return environ[env], env
        default = next(d for n, d, _ in FLAGS if n == name)
        return default, f"--{name}"

    def bad(source: str, raw: str, fix: str) -> ConfigError:
        return ConfigError(f"{source}={raw!r} is invalid: {fix}")

    def duration(name: str, allow_zero: bool = False) -> float:
        raw, src = value(name)
        try:
            seconds = parse_duration(raw)
        except ValueError:
            raise bad(src, raw, "use a duration like 30s, 5m or 1h") from None
        if seconds < 0 or (seconds == 0 and not allow_zero):
            raise bad(src, raw, "use a duration above 0" + (" (or 0 to switch off)" if allow_zero else ""))
        return seconds

    raw, src = value("web.listen-address")
    try:
        host, port = parse_listen_address(raw)
    except ValueError:
        raise bad(src, raw, "use host:port, e.g. :9818, 127.0.0.1:9818 or [::1]:9818") from None

    path, src = value("web.telemetry-path")
    if not path.startswith("/") or path == "/" or any(c.isspace() for c in path):
        raise bad(src, path, "use an absolute path other than /, e.g. /metrics")

    level, src = value("log.level")
    if level.lower() not in ("debug", "info", "warn", "warning", "error"):
        raise bad(src, level, "use one of debug, info, warn, error")
    fmt, src = value("log.format")
    if fmt.lower() not in ("json", "console", "auto"):
        raise bad(src, fmt, "use one of json, console, auto")

    docker_host, src = value("docker.host")
    if not docker_host:
        docker_host, src = environ.get("DOCKER_HOST", "") or DEFAULT_DOCKER_HOST, "DOCKER_HOST"
    if not re.match(r"^(unix|tcp|http|https)://.+", docker_host):
        raise bad(src, docker_host, "use unix:///var/run/docker.sock or tcp://host:2376")
    try:
        docker.utils.parse_host(docker_host)
    except (docker.errors.DockerException, ValueError):
        raise bad(src, docker_host, "use unix:///var/run/docker.sock or tcp://host:2376") from None

    docker_tls = None
    if not docker_host.startswith("unix://"):
        try:
            docker_tls = tls_from_env(environ)
        except ValueError as exc:
            raise ConfigError(f"--docker.host={docker_host}: {exc}") from None

    rootfs, src = value("path.rootfs")
    if not os.path.isabs(rootfs) or not os.path.isdir(rootfs):
        raise bad(src, rootfs, "use an existing absolute directory where the host's / is mounted")

    containerd_root, src = value("containerd.root")
    if containerd_root and not os.path.isabs(containerd_root):
        raise bad(src, containerd_root, "use an absolute path, e.g. /var/lib/containerd")
    containerd_ns, src = value("containerd.namespace")
    if containerd_ns and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", containerd_ns):
        raise bad(src, containerd_ns, "use a containerd namespace name, e.g. moby")

    def whole(name: str, fix: str) -> int:
        raw, src = value(name)
        try:
            n = int(raw)
        except ValueError:
            raise bad(src, raw, fix) from None
        if n < 0:
            raise bad(src, raw, "use 0 or more")
        return n

    top_n = whole("metrics.top-n", "use a whole number of series, e.g. 50")
    workers = whole("sampler.scan.workers", "use a whole number of processes, or 0 for one per CPU")

    web_file, src = value("web.config.file")
    web_config = None
    if web_file:
        try:
            web_config = load_web_config(web_file)
        except WebConfigError as exc:
            raise ConfigError(f"{src} {web_file}: {exc}") from None

    max_requests = whole("web.max-requests", "use a whole number of requests, or 0 for no limit")

    hide_raw, src = value("metrics.hide-names")
    if hide_raw.strip().lower() not in ("true", "false", "1", "0", "yes", "no"):
        raise bad(src, hide_raw, "use true or false")

    desktop_interval = duration("sampler.desktop.interval", allow_zero=True)
    disk_image = desktop_disk_image(value, bad, desktop_interval)
    registry_roots = _registry_roots(args.get("registry.root"), environ, bad)

    return Config(
        listen_host=host,
        listen_port=port,
        telemetry_path=path,
        log_level="warning" if level.lower() == "warn" else level.lower(),
        log_format=fmt.lower(),
        docker_host=docker_host,
        docker_timeout=duration("docker.timeout"),
        rootfs=os.path.normpath(rootfs),
        containerd_root=os.path.normpath(containerd_root) if containerd_root else "",
        containerd_namespace=containerd_ns,
        engine_interval=duration("sampler.engine.interval"),
        filesystem_interval=duration("sampler.filesystem.interval"),
        build_cache_interval=duration("sampler.build-cache.interval", allow_zero=True),
        build_cache_legacy_interval=duration("sampler.build-cache.legacy-interval", allow_zero=True),
        top_n=top_n,
        scan_interval=duration("sampler.scan.interval", allow_zero=True),
        scan_budget=duration("sampler.scan.budget"),
        scan_workers=workers,
        web_config=web_config,
        max_requests=max_requests,
        read_header_timeout=duration("web.read-header-timeout"),
        hide_names=hide_raw.strip().lower() in ("true", "1", "yes"),
        docker_tls=docker_tls,
        desktop_disk_image=disk_image,
        desktop_interval=desktop_interval,
        registry_roots=registry_roots,
        registry_interval=duration("sampler.registry.interval", allow_zero=True),
    )


def desktop_disk_image(
    value: Callable[[str], tuple[str, str]], bad: Callable[[str, str, str], ConfigError], interval: float
) -> str:
    """--desktop.disk-image: an absolute path to the image, or to a dir holding one."""
    raw, src = value("desktop.disk-image")
    if not raw:
        return ""
    path = os.path.expanduser(raw)  # a quoted or `--flag=~/…` tilde reaches us unexpanded
    if not os.path.isabs(path):
        raise bad(src, raw, "use an absolute path, e.g. ~/.docker/desktop/vms/0/data/Docker.raw")
    if interval == 0:
        raise bad(src, raw, "--sampler.desktop.interval=0 switches its sampler off: drop one of the two")
    if not any(os.path.isfile(c.path) for c in given(path, host_system())):
        raise bad(
            src,
            raw,
            "no Docker Desktop disk image there; give the file (Docker.raw, docker_data.vhdx…) or the "
            "dir Settings > Resources > Disk image location shows",
        )
    return os.path.normpath(path)


def _registry_roots(
    given: list[str] | None, environ: Mapping[str, str], bad: Callable[[str, str, str], ConfigError]
) -> tuple[str, ...]:
    """--registry.root values (or the env var's, comma-separated): existing absolute dirs, each once."""
    if given is not None:
        raws, src = given, "--registry.root"
    else:
        env = env_name("registry.root")
        raws, src = [r for r in environ.get(env, "").split(",") if r.strip()], env
    roots: list[str] = []
    for raw in raws:
        root = raw.strip()
        if not os.path.isabs(root):
            raise bad(src, raw, "use an absolute path, e.g. /var/lib/registry")
        if not os.path.isdir(root):
            raise bad(src, raw, "use an existing directory: the registry's storage.filesystem.rootdirectory")
        root = os.path.normpath(root)
        if root in roots:
            raise bad(src, raw, "give each registry root once")
        roots.append(root)
    return tuple(roots)
