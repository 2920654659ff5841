"""The compose demo (deploy/compose): every file it mounts or builds from exists, the exporter runs
with least privilege, the Prometheus config and rules it mounts pass promtool as they are laid
out in the container, and Grafana is provisioned with a default Prometheus data source and the
project's dashboards."""

from __future__ import annotations

import json
import posixpath
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from exporter.config import FLAGS, env_name, parse_listen_address

ROOT = Path(__file__).resolve().parents[1]
COMPOSE_DIR = ROOT / "deploy" / "compose"
COMPOSE_FILE = COMPOSE_DIR / "docker-compose.yml"
RULES = ROOT / "grafana" / "alerts" / "docker-storage.rules.yml"
DASHBOARDS = ROOT / "grafana" / "dashboards"


# --- helpers ---------------------------------------------------------------------------------------


def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE_FILE.read_text())


def service(name: str) -> dict[str, Any]:
    return compose()["services"][name]


def mounts(svc: dict[str, Any]) -> list[dict[str, Any]]:
    """A service's volumes in the long syntax (short `src:dst[:ro]` entries converted)."""
    named = set(compose().get("volumes") or {})
    out = []
    for v in svc.get("volumes", []):
        if isinstance(v, dict):
            out.append(v)
            continue
        src, dst, *opts = v.split(":")
        kind = "volume" if src in named else "bind"
        out.append({"type": kind, "source": src, "target": dst, "read_only": "ro" in opts})
    return out


def binds(svc: dict[str, Any]) -> list[dict[str, Any]]:
    return [m for m in mounts(svc) if m["type"] == "bind"]


def host_path(source: str) -> Path:
    """A bind source as compose resolves it: relative to the compose file's directory."""
    return (COMPOSE_DIR / source).resolve()


def is_relative(source: str) -> bool:
    return source.startswith(".")


def bind_source_for(svc: dict[str, Any], container_path: str) -> Path:
    """The repository file or directory that appears at `container_path` in the container."""
    best: tuple[str, str] | None = None
    for m in binds(svc):
        target = m["target"].rstrip("/")
        if container_path == target or container_path.startswith(target + "/"):
            if best is None or len(target) > len(best[0]):
                best = (target, m["source"])
    assert best is not None, f"nothing is mounted at {container_path}"
    target, source = best
    assert is_relative(source), f"{container_path} comes from the host path {source}, not the repository"
    return host_path(source) / posixpath.relpath(container_path, target)


def flag(args: list[str], name: str) -> str:
    values = [a.split("=", 1)[1] for a in args if a.startswith(f"--{name}=")]
    assert len(values) == 1, f"--{name} given {len(values)} times in {args}"
    return values[0]


def layout_container(svc: dict[str, Any], under: str, dest: Path) -> None:
    """Copy the repository files a service mounts below `under` to `dest`, at the same relative
    paths as in the container, so tools can check them as the container sees them."""
    for m in binds(svc):
        target = m["target"]
        if not (target == under or target.startswith(under.rstrip("/") + "/")) or not is_relative(
            m["source"]
        ):
            continue
        src, dst = host_path(m["source"]), dest / posixpath.relpath(target, under)
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, dst)
        else:
            shutil.copyfile(src, dst)


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["promtool", *args], capture_output=True, text=True, timeout=60)


# --- the compose file ----------------------------------------------------------------------------------


def test_services():
    assert set(compose()["services"]) == {"exporter", "registry", "prometheus", "grafana"}
    assert service("prometheus")["image"].startswith("prom/prometheus:v")
    assert service("grafana")["image"].startswith("grafana/grafana:")
    assert service("registry")["image"].startswith("registry:")


REGISTRY_DEFAULT_ROOT = "/var/lib/registry"  # registry:2's storage.filesystem.rootdirectory


def test_exporter_reads_the_registrys_storage_read_only():
    """The registry service keeps its storage in a named volume; the exporter mounts that same
    volume read-only (never copying anything into it) and is told where (--registry.root)."""
    registry, exporter = service("registry"), service("exporter")
    env = registry.get("environment") or {}
    root = env.get("REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY", REGISTRY_DEFAULT_ROOT)
    (store,) = [m for m in mounts(registry) if m["target"] == root]
    assert store["type"] == "volume" and store["source"] in compose()["volumes"]
    assert not store.get("read_only"), "the registry itself writes its storage"
    (seen,) = [m for m in mounts(exporter) if m["type"] == "volume"]
    assert seen["source"] == store["source"]
    assert seen["read_only"] is True and seen["volume"]["nocopy"] is True
    assert flag(exporter["command"], "registry.root") == seen["target"]
    # Only the registry is published for pushes, and only on loopback (it has no auth).
    assert registry["ports"] == ["127.0.0.1:5000:5000"]
    assert env.get("REGISTRY_STORAGE_DELETE_ENABLED") == "true"


def test_exporter_flags_are_the_exporters_own():
    known = {name for name, _, _ in FLAGS}
    for arg in service("exporter")["command"]:
        assert arg.startswith("--") and arg[2:].split("=", 1)[0] in known, arg


def test_every_referenced_file_exists():
    checked = 0
    for name, svc in compose()["services"].items():
        build = svc.get("build")
        if build:
            context = host_path(build["context"] if isinstance(build, dict) else build)
            assert context.is_dir(), f"{name}: build context {context} is missing"
            dockerfile = context / (
                build.get("dockerfile", "Dockerfile") if isinstance(build, dict) else "Dockerfile"
            )
            assert dockerfile.is_file(), f"{name}: {dockerfile} is missing"
            checked += 1
        for m in mounts(svc):
            if m["type"] == "volume":
                assert m["source"] in compose()["volumes"], f"{name}: undeclared volume {m['source']}"
            elif m["type"] == "bind" and is_relative(m["source"]):
                assert host_path(m["source"]).exists(), f"{name}: {m['source']} is missing"
                checked += 1
            elif m["type"] == "bind":
                # Host paths: the host's / and the Docker socket, nothing else.
                assert m["source"] in ("/", "/var/run/docker.sock"), f"{name}: mounts host path {m['source']}"
    assert checked >= 5


def test_exporter_least_privilege():
    svc = service("exporter")
    assert svc["build"]["context"] == "../.."
    assert svc["cap_drop"] == ["ALL"]
    assert svc["cap_add"] == ["DAC_READ_SEARCH"]
    assert svc["read_only"] is True
    assert "no-new-privileges:true" in svc["security_opt"]
    for key in ("privileged", "pid", "network_mode", "user", "devices"):
        assert key not in svc, key
    host = {m["source"]: m for m in binds(svc)}
    assert set(host) == {"/", "/var/run/docker.sock"}
    assert host["/"]["target"] == "/host" and host["/"]["read_only"] is True
    assert host["/"]["bind"]["propagation"] == "rslave"
    assert host["/var/run/docker.sock"]["read_only"] is True
    # The only writable place: a small tmpfs for multiprocessing's forkserver socket.
    (tmpfs,) = [m for m in mounts(svc) if m["type"] == "tmpfs"]
    assert tmpfs["target"] == "/tmp" and tmpfs["tmpfs"]["size"] <= 64 * 2**20
    args = svc["command"]
    assert flag(args, "path.rootfs") == host["/"]["target"]
    assert flag(args, "docker.host") == "unix://" + host["/var/run/docker.sock"]["target"]
    assert "9818:9818" in svc["ports"]


# --- Prometheus ------------------------------------------------------------------------------------------


def test_prometheus_mounts_the_projects_rules():
    svc = service("prometheus")
    config_path = flag(svc["command"], "config.file")
    assert bind_source_for(svc, config_path) == COMPOSE_DIR / "prometheus.yml"
    config = yaml.safe_load((COMPOSE_DIR / "prometheus.yml").read_text())
    config_dir = posixpath.dirname(config_path)
    for rule_file in config["rule_files"]:
        in_container = posixpath.normpath(posixpath.join(config_dir, rule_file))
        assert bind_source_for(svc, in_container) == RULES
    # Prometheus scrapes the exporter service on the port the exporter listens on.
    targets = [t for job in config["scrape_configs"] for sc in job["static_configs"] for t in sc["targets"]]
    assert "exporter:9818" in targets


def test_prometheus_config_passes_promtool(tmp_path):
    """promtool checks the config and every rule file it names, laid out as in the container."""
    svc = service("prometheus")
    config_path = flag(svc["command"], "config.file")
    under = posixpath.dirname(config_path)
    layout_container(svc, under, tmp_path)
    res = promtool("check", "config", str(tmp_path / posixpath.basename(config_path)))
    out = res.stdout + res.stderr
    assert res.returncode == 0, out
    assert "SUCCESS" in out
    n_rules = sum(len(g["rules"]) for g in yaml.safe_load(RULES.read_text())["groups"])
    assert f"SUCCESS: {n_rules} rules found" in out, out


def test_mounted_rules_pass_promtool():
    svc = service("prometheus")
    config_dir = posixpath.dirname(flag(svc["command"], "config.file"))
    rule_files = yaml.safe_load((COMPOSE_DIR / "prometheus.yml").read_text())["rule_files"]
    sources = [bind_source_for(svc, posixpath.join(config_dir, f)) for f in rule_files]
    assert sources == [RULES]
    res = promtool("check", "rules", *map(str, sources))
    assert res.returncode == 0, res.stdout + res.stderr
    assert "SUCCESS" in res.stdout


# --- Grafana ---------------------------------------------------------------------------------------------


def provisioning(kind: str) -> dict[str, Any]:
    (path,) = sorted((bind_source_for(service("grafana"), "/etc/grafana/provisioning") / kind).glob("*.y*ml"))
    return yaml.safe_load(path.read_text())


def test_grafana_datasource_is_the_default_prometheus():
    doc = provisioning("datasources")
    assert doc["apiVersion"] == 1
    (ds,) = doc["datasources"]
    assert ds["type"] == "prometheus"
    assert ds["isDefault"] is True
    assert re.fullmatch(r"[A-Za-z0-9_-]{1,40}", ds["uid"]), ds["uid"]
    assert ds["access"] == "proxy"
    # The Prometheus service, on the port its container serves.
    assert ds["url"] == "http://prometheus:9090"
    assert "9090:9090" in service("prometheus")["ports"]


def test_dashboards_select_the_provisioned_datasource():
    """The dashboards pick their data source with a `datasource` variable of type prometheus:
    Grafana selects the default one of that type, the one provisioned here."""
    (ds,) = provisioning("datasources")["datasources"]
    dashboards = sorted(DASHBOARDS.glob("*.json"))
    assert dashboards
    for path in dashboards:
        variables = json.loads(path.read_text())["templating"]["list"]
        chooser = [v for v in variables if v["type"] == "datasource"]
        assert chooser, f"{path.name} has no datasource variable"
        assert {v["query"] for v in chooser} == {ds["type"]}


def test_grafana_dashboards_provider():
    svc = service("grafana")
    doc = provisioning("dashboards")
    assert doc["apiVersion"] == 1
    (provider,) = doc["providers"]
    assert provider["type"] == "file"
    folder = provider["options"]["path"]
    assert bind_source_for(svc, folder) == DASHBOARDS
    served = sorted(p.name for p in bind_source_for(svc, folder).glob("*.json"))
    assert served == ["fleet.json", "host.json"]
    # The home page is the Host dashboard, from the mounted folder.
    home = svc["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert bind_source_for(svc, home) == DASHBOARDS / "host.json"


def listens_on(svc: dict[str, Any], flag_name: str, default: str) -> int:
    """The port a service's process listens on in its container: its --<flag> or the default."""
    given = [a.split("=", 1)[1] for a in svc.get("command", []) if a.startswith(f"--{flag_name}=")]
    return parse_listen_address(given[-1] if given else default)[1]


def exporter_default(name: str) -> str:
    (default,) = [d for flag_name, d, _ in FLAGS if flag_name == name]
    return default


def check_prometheus_config(doc: dict[str, Any]) -> None:
    # The exporter job scrapes the compose exporter service, and only it, where it serves
    # metrics: its listen port and telemetry path (the compose file sets neither, nor do
    # environment variables, so the exporter's defaults), published as is.
    exporter = service("exporter")
    dockerfile = (ROOT / "Dockerfile").read_text()
    for name in ("web.listen-address", "web.telemetry-path", "web.config.file"):
        assert not [a for a in exporter["command"] if a.startswith(f"--{name}")], name
        assert env_name(name) not in (exporter.get("environment") or {}), name
        assert env_name(name) not in dockerfile, name
    port = parse_listen_address(exporter_default("web.listen-address"))[1]
    assert port == 9818 and f"{port}:{port}" in exporter["ports"]
    jobs = {job["job_name"]: job for job in doc["scrape_configs"]}
    assert set(jobs) == {"docker-storage", "prometheus"}
    job = jobs["docker-storage"]
    assert job.get("metrics_path", "/metrics") == exporter_default("web.telemetry-path")
    assert job.get("scheme", "http") == "http"  # no --web.config.file: the exporter serves plain HTTP
    (static,) = job["static_configs"]
    assert static["targets"] == [f"exporter:{port}"]
    # The dashboards' Host variable and the alerts name a host by `instance`.
    assert static["labels"]["instance"]
    # Prometheus scrapes itself where its container listens.
    prom = service("prometheus")
    prom_port = listens_on(prom, "web.listen-address", "0.0.0.0:9090")
    assert jobs["prometheus"]["static_configs"] == [{"targets": [f"localhost:{prom_port}"]}]
    # Every rule file it loads is mounted from a file of the repository that exists.
    config_dir = posixpath.dirname(flag(prom["command"], "config.file"))
    assert doc["rule_files"]
    for rule_file in doc["rule_files"]:
        source = bind_source_for(prom, posixpath.normpath(posixpath.join(config_dir, rule_file)))
        assert source.is_file() and ROOT in source.parents, source


def check_datasource(doc: dict[str, Any]) -> None:
    (ds,) = doc["datasources"]
    # The URL is the Prometheus service, on the port its process listens on in the container
    # (not a published host port: Grafana reaches it over the compose network).
    prom = service("prometheus")
    assert prom["image"].startswith("prom/prometheus:")
    assert ds["url"] == f"http://prometheus:{listens_on(prom, 'web.listen-address', '0.0.0.0:9090')}"
    # The dashboards name no data source uid (test_dashboards.py): their `datasource`
    # variable selects the default data source of its type, this one, as long as it pins no
    # other one as its current value.
    dashboards = sorted(DASHBOARDS.glob("*.json"))
    assert dashboards
    for path in dashboards:
        variables = json.loads(path.read_text())["templating"]["list"]
        (chooser,) = [v for v in variables if v["type"] == "datasource"]
        assert chooser["current"] in ({}, {"value": ds["uid"]}), (path.name, chooser["current"])
    # Grafana's minimum step is Prometheus's scrape interval, so that $__rate_interval holds
    # enough samples.
    config = yaml.safe_load((COMPOSE_DIR / "prometheus.yml").read_text())
    assert ds["jsonData"]["timeInterval"] == config["global"]["scrape_interval"]


def check_dashboards_provider(doc: dict[str, Any]) -> None:
    (provider,) = doc["providers"]
    svc = service("grafana")
    (mount,) = [m for m in binds(svc) if m["target"].rstrip("/") == provider["options"]["path"].rstrip("/")]
    # The folder is mounted read-only: the dashboards are the repository's files, never
    # changed or deleted from the UI.
    assert mount["read_only"] is True
    assert provider["allowUiUpdates"] is False and provider["disableDeletion"] is True
    # All in one named folder (with foldersFromFilesStructure Grafana would ignore `folder`).
    assert provider["options"].get("foldersFromFilesStructure", False) is False
    assert provider["folder"] and provider["name"]
    assert provider["updateIntervalSeconds"] > 0


@pytest.mark.parametrize(
    ("path", "check"),
    [
        ("prometheus.yml", check_prometheus_config),
        ("grafana/provisioning/datasources/prometheus.yml", check_datasource),
        ("grafana/provisioning/dashboards/dashboards.yml", check_dashboards_provider),
    ],
    ids=["prometheus", "datasource", "dashboards"],
)
def test_config_files_are_plain_yaml(path: str, check: Any):
    """Each config file the compose demo mounts parses as plain YAML and says what the demo
    needs (what the tests above do not already check)."""
    doc = yaml.safe_load((COMPOSE_DIR / path).read_text())
    assert isinstance(doc, dict)
    check(doc)
