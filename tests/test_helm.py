"""The Helm chart (deploy/helm/docker-storage-exporter), rendered by Helm's own engine
(helm-python-sdk, Helm 4's Go SDK: no helm binary, no cluster) for the default values and every
ci/*-values.yaml, linted by Helm, every manifest validated against Kubernetes' schemas
(kubernetes-validate, strict), and the fields that matter asserted: read-only host mounts, the
security context, no service-account token, labels, and the alert rules and dashboards equal to
the project's own (grafana/), byte for byte in the chart's files/."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import helm_python as helm
import jsonschema
import kubernetes_validate
import pytest
import yaml

from exporter import __version__
from exporter.config import FLAGS

ROOT = Path(__file__).resolve().parents[1]
CHART = ROOT / "deploy" / "helm" / "docker-storage-exporter"
RULES = ROOT / "grafana" / "alerts" / "docker-storage.rules.yml"
DASHBOARDS = ROOT / "grafana" / "dashboards"
CI_VALUES = sorted((CHART / "ci").glob("*-values.yaml"))

RELEASE = "dse"
NAMESPACE = "monitoring"
# The oldest schemas kubernetes-validate ships (the chart claims >=1.23) and a recent release.
KUBE_VERSIONS = ["1.25.0", "1.33.0"]
CRD_KINDS = {"ServiceMonitor", "PrometheusRule"}
STANDARD_LABELS = {
    "app.kubernetes.io/name": "docker-storage-exporter",
    "app.kubernetes.io/instance": RELEASE,
    "app.kubernetes.io/version": "0.1.0",
    "app.kubernetes.io/managed-by": "Helm",
    "helm.sh/chart": "docker-storage-exporter-0.1.0",
}


# --- helpers (reusable: render the chart as `helm template` would) ---------------------------------


def load_values(path: Path) -> dict[str, Any]:
    """A values file as Helm reads it (`-f path`); an empty file is no values."""
    return yaml.safe_load(path.read_text()) or {}


def render_templates(
    values: dict[str, Any] | None = None, *, name: str = RELEASE, namespace: str = NAMESPACE
) -> dict[str, str]:
    """Template path -> rendered text, with Helm's engine; the values are checked against
    values.schema.json first, as `helm install` does (HelmValuesError when they fail)."""
    with helm.Chart.load(CHART) as chart:
        return chart.render(values or {}, name=name, namespace=namespace, is_install=True)


def render(
    values: dict[str, Any] | None = None, *, name: str = RELEASE, namespace: str = NAMESPACE
) -> list[dict[str, Any]]:
    """Every Kubernetes object the chart renders (NOTES.txt and empty documents left out)."""
    docs: list[dict[str, Any]] = []
    for path, text in sorted(render_templates(values, name=name, namespace=namespace).items()):
        if path.endswith("NOTES.txt"):
            continue
        docs.extend(doc for doc in yaml.safe_load_all(text) if doc)
    return docs


def notes(values: dict[str, Any] | None = None) -> str:
    rendered = render_templates(values)
    return next(text for path, text in rendered.items() if path.endswith("NOTES.txt"))


def only(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, got {len(found)}"
    return found[0]


def kinds(docs: list[dict[str, Any]]) -> list[str]:
    return sorted(d["kind"] for d in docs)


def exporter_container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    containers = only(docs, "DaemonSet")["spec"]["template"]["spec"]["containers"]
    return next(c for c in containers if c["name"] == "exporter")


def mounts_by_volume(docs: list[dict[str, Any]]) -> dict[str, tuple[dict[str, Any], dict[str, Any]]]:
    """Volume name -> (its volumeMount in the exporter container, the pod's volume)."""
    pod = only(docs, "DaemonSet")["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    return {m["name"]: (m, volumes[m["name"]]) for m in exporter_container(docs)["volumeMounts"]}


def check_crd_structure(doc: dict[str, Any]) -> None:
    """kubernetes-validate knows no CRDs: check the Prometheus Operator objects by structure."""
    assert doc["apiVersion"] == "monitoring.coreos.com/v1"
    meta = doc["metadata"]
    assert meta["name"] and meta["namespace"]
    assert all(isinstance(v, str) for v in meta["labels"].values())
    spec = doc["spec"]
    if doc["kind"] == "ServiceMonitor":
        assert spec["selector"]["matchLabels"]
        assert spec["endpoints"], "a ServiceMonitor needs endpoints"
        for ep in spec["endpoints"]:
            assert set(ep) <= {
                "port", "path", "scheme", "interval", "scrapeTimeout", "relabelings", "metricRelabelings",
            }, ep  # fmt: skip
            assert ep["port"] == "http-metrics"
            for r in ep.get("relabelings", []) + ep.get("metricRelabelings", []):
                assert isinstance(r, dict)
    else:
        assert spec["groups"]
        for group in spec["groups"]:
            assert group["name"] and group["rules"]
            for rule in group["rules"]:
                assert ("alert" in rule) != ("record" in rule), rule
                assert isinstance(rule["expr"], str) and rule["expr"].strip()


@pytest.fixture(scope="module")
def default_docs() -> list[dict[str, Any]]:
    return render()


@pytest.fixture(scope="module")
def kps_docs() -> list[dict[str, Any]]:
    return render(load_values(CHART / "ci" / "kube-prometheus-stack-values.yaml"))


@pytest.fixture(scope="module")
def custom_docs() -> list[dict[str, Any]]:
    return render(load_values(CHART / "ci" / "custom-paths-values.yaml"))


@pytest.fixture(scope="module")
def registry_docs() -> list[dict[str, Any]]:
    return render(load_values(CHART / "ci" / "registry-values.yaml"))


# --- the chart as Helm sees it --------------------------------------------------------------------


def test_ci_values_files_exist():
    assert {p.name for p in CI_VALUES} >= {
        "default-values.yaml", "kube-prometheus-stack-values.yaml", "custom-paths-values.yaml",
        "registry-values.yaml",
    }  # fmt: skip


def test_chart_metadata():
    meta = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert meta["apiVersion"] == "v2"
    assert meta["type"] == "application"
    assert meta["name"] == "docker-storage-exporter"
    assert meta["kubeVersion"] == ">=1.23.0-0"
    # The image the chart deploys by default is the exporter this repository builds.
    assert meta["appVersion"] == __version__


@pytest.mark.parametrize("values_file", CI_VALUES, ids=lambda p: p.name)
def test_helm_lint_passes(values_file: Path):
    report = helm.lint(CHART, load_values(values_file), strict=True, namespace=NAMESPACE)
    assert report["total_charts_linted"] == 1
    assert report["errors"] == [], report
    problems = [m for m in report["messages"] if m["severity"] >= 2]
    assert problems == [], problems


@pytest.mark.parametrize("kube_version", KUBE_VERSIONS)
@pytest.mark.parametrize("values_file", CI_VALUES, ids=lambda p: p.name)
def test_every_manifest_validates(values_file: Path, kube_version: str):
    docs = render(load_values(values_file))
    assert "DaemonSet" in kinds(docs)
    for doc in docs:
        where = f"{doc['kind']}/{doc['metadata']['name']}"
        if doc["kind"] in CRD_KINDS:
            check_crd_structure(doc)
            continue
        try:
            kubernetes_validate.validate(doc, kube_version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{where} is invalid for Kubernetes {kube_version}: {exc.message} at {exc.path}")


def test_default_objects(default_docs):
    # The optional Prometheus Operator and Grafana objects are off unless asked for.
    assert kinds(default_docs) == ["DaemonSet", "Pod", "Service", "ServiceAccount"]


def test_kube_prometheus_stack_objects(kps_docs):
    assert kinds(kps_docs) == [
        "ConfigMap", "DaemonSet", "Pod", "PrometheusRule", "Service", "ServiceAccount", "ServiceMonitor",
    ]  # fmt: skip


# The `--set` form of ci/kube-prometheus-stack-values.yaml that docs/deploy.md gives.
KPS_SET = (
    "serviceMonitor.enabled=true,serviceMonitor.additionalLabels.release=kube-prometheus-stack,"
    "prometheusRule.enabled=true,prometheusRule.additionalLabels.release=kube-prometheus-stack,"
    "dashboards.enabled=true"
)


def test_documented_set_flags_match_the_ci_values(kps_docs):
    docs = render(helm.parse_set_string(KPS_SET))
    assert kinds(docs) == kinds(kps_docs)
    for kind in ("ServiceMonitor", "PrometheusRule"):
        assert only(docs, kind) == only(kps_docs, kind)
    assert only(docs, "ConfigMap")["data"] == only(kps_docs, "ConfigMap")["data"]


# --- the DaemonSet ----------------------------------------------------------------------------------


def test_host_mounts_are_read_only(default_docs):
    mounts = mounts_by_volume(default_docs)
    sock_mount, sock_vol = mounts["docker-socket"]
    assert sock_mount == {"name": "docker-socket", "mountPath": "/var/run/docker.sock", "readOnly": True}
    assert sock_vol["hostPath"] == {"path": "/var/run/docker.sock", "type": "Socket"}
    root_mount, root_vol = mounts["host-root"]
    assert root_mount == {
        "name": "host-root", "mountPath": "/host", "readOnly": True, "mountPropagation": "HostToContainer",
    }  # fmt: skip
    assert root_vol["hostPath"] == {"path": "/", "type": "Directory"}
    # Every hostPath is mounted read-only; the only writable mount is the small in-memory /tmp.
    for mount, volume in mounts.values():
        if "hostPath" in volume:
            assert mount.get("readOnly") is True, mount
        else:
            assert volume["emptyDir"]["medium"] == "Memory" and volume["emptyDir"]["sizeLimit"]
            assert mount["mountPath"] == "/tmp"


def test_args_point_at_the_mounts(default_docs):
    args = exporter_container(default_docs)["args"]
    assert "--path.rootfs=/host" in args
    assert "--docker.host=unix:///var/run/docker.sock" in args
    assert "--web.listen-address=:9818" in args
    # One scan process per node CPU would not fit the memory limit on a big node.
    assert "--sampler.scan.workers=2" in args


def test_container_security_context(default_docs):
    ctx = exporter_container(default_docs)["securityContext"]
    assert ctx["readOnlyRootFilesystem"] is True
    assert ctx["allowPrivilegeEscalation"] is False
    assert ctx["privileged"] is False
    assert ctx["capabilities"] == {"drop": ["ALL"], "add": ["DAC_READ_SEARCH"]}
    assert ctx["runAsUser"] == 0
    assert ctx["seccompProfile"] == {"type": "RuntimeDefault"}
    pod = only(default_docs, "DaemonSet")["spec"]["template"]["spec"]
    assert pod["hostNetwork"] is False
    assert "hostPID" not in pod and "hostIPC" not in pod


def test_no_service_account_token(default_docs):
    assert only(default_docs, "ServiceAccount")["automountServiceAccountToken"] is False
    pod = only(default_docs, "DaemonSet")["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False
    assert pod["serviceAccountName"] == only(default_docs, "ServiceAccount")["metadata"]["name"]
    test_pod = only(default_docs, "Pod")
    assert test_pod["spec"]["automountServiceAccountToken"] is False


def test_runs_on_every_node_by_default(default_docs):
    ds = only(default_docs, "DaemonSet")
    pod = ds["spec"]["template"]["spec"]
    assert pod["tolerations"] == [{"operator": "Exists"}]
    assert pod["nodeSelector"] == {"kubernetes.io/os": "linux"}
    assert ds["spec"]["updateStrategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}}


def test_probes_and_resources(default_docs):
    c = exporter_container(default_docs)
    for probe in (c["livenessProbe"], c["readinessProbe"]):
        assert probe["httpGet"] == {"path": "/healthz", "port": "http-metrics"}
    assert c["ports"] == [{"name": "http-metrics", "containerPort": 9818, "protocol": "TCP"}]
    assert c["resources"] == {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"memory": "256Mi"}}
    assert c["image"] == "ghcr.io/docker-storage-exporter/docker-storage-exporter:0.1.0"


def test_standard_labels_and_selectors(default_docs, kps_docs):
    for doc in kps_docs:
        labels = doc["metadata"]["labels"]
        for key, value in STANDARD_LABELS.items():
            assert labels.get(key) == value, f"{doc['kind']} lacks {key}={value}"
    ds = only(default_docs, "DaemonSet")
    pod_labels = ds["spec"]["template"]["metadata"]["labels"]
    selector = ds["spec"]["selector"]["matchLabels"]
    assert selector == {
        "app.kubernetes.io/name": "docker-storage-exporter",
        "app.kubernetes.io/instance": RELEASE,
    }
    assert selector.items() <= pod_labels.items()
    svc = only(default_docs, "Service")
    assert svc["spec"]["selector"] == selector
    assert svc["spec"]["type"] == "ClusterIP"
    assert svc["spec"]["ports"] == [
        {"name": "http-metrics", "port": 9818, "targetPort": "http-metrics", "protocol": "TCP"}
    ]


def test_custom_paths(custom_docs):
    mounts = mounts_by_volume(custom_docs)
    sock_mount, sock_vol = mounts["docker-socket"]
    assert sock_vol["hostPath"]["path"] == "/run/docker.sock"
    assert sock_mount["mountPath"] == "/var/run/docker.sock" and sock_mount["readOnly"] is True
    root_mount, root_vol = mounts["host-root"]
    # Only the Docker root is mounted, where --path.rootfs=/host expects its host path.
    assert root_vol["hostPath"]["path"] == "/data/docker"
    assert root_mount["mountPath"] == "/host/data/docker" and root_mount["readOnly"] is True
    c = exporter_container(custom_docs)
    args = c["args"]
    assert "--path.rootfs=/host" in args and "--docker.host=unix:///var/run/docker.sock" in args
    assert args[-3:] == ["--sampler.scan.interval=15m", "--metrics.top-n=100", "--log.level=debug"]
    assert "--sampler.scan.workers=4" in args and "--web.listen-address=:9819" in args
    assert c["env"] == [{"name": "DOCKER_STORAGE_EXPORTER_LOG_FORMAT", "value": "json"}]
    assert c["resources"]["limits"] == {"cpu": "1", "memory": "512Mi"}
    assert c["image"].endswith(":0.1.0@sha256:" + "0123456789abcdef" * 4)
    pod = only(custom_docs, "DaemonSet")["spec"]["template"]["spec"]
    assert pod["priorityClassName"] == "system-node-critical"
    assert pod["nodeSelector"]["example.com/container-runtime"] == "docker"
    assert pod["hostNetwork"] is True and pod["dnsPolicy"] == "ClusterFirstWithHostNet"
    assert pod["imagePullSecrets"] == [{"name": "registry-credentials"}]
    # serviceAccount.create=false: no ServiceAccount, the named one is used, still no token.
    assert "ServiceAccount" not in kinds(custom_docs)
    assert pod["serviceAccountName"] == "docker-storage-exporter"
    assert pod["automountServiceAccountToken"] is False


def test_host_root_can_be_switched_off():
    docs = render({"hostRoot": {"enabled": False, "path": "/"}})
    assert set(mounts_by_volume(docs)) == {"docker-socket", "tmp"}
    assert not any(a.startswith("--path.rootfs") for a in exporter_container(docs)["args"])


# --- a self-hosted registry's storage (registry.roots) ------------------------------------------------


def registry_args(docs: list[dict[str, Any]]) -> list[str]:
    flags = ("--registry.", "--sampler.registry.")
    return [a for a in exporter_container(docs)["args"] if a.startswith(flags)]


def test_no_registry_roots_mount_and_pass_nothing(default_docs):
    assert not [name for name in mounts_by_volume(default_docs) if name.startswith("registry")]
    pod = only(default_docs, "DaemonSet")["spec"]["template"]["spec"]
    assert not [v for v in pod["volumes"] if "persistentVolumeClaim" in v]
    assert registry_args(default_docs) == []
    # An interval alone turns nothing on.
    assert registry_args(render({"registry": {"roots": [], "interval": "15m"}})) == []


def test_registry_roots_are_mounted_read_only_and_passed(registry_docs):
    mounts = mounts_by_volume(registry_docs)
    main_mount, main_vol = mounts["registry-main"]
    assert main_mount == {"name": "registry-main", "mountPath": "/registry/main", "readOnly": True}
    # type Directory: a node without the registry's dir keeps the pod from starting rather
    # than have the kubelet create an empty dir on the node.
    assert main_vol["hostPath"] == {"path": "/var/lib/registry", "type": "Directory"}
    harbor_mount, harbor_vol = mounts["registry-harbor"]
    assert harbor_mount == {
        "name": "registry-harbor",
        "mountPath": "/srv/harbor-registry",
        "readOnly": True,
        "subPath": "registry",
    }
    assert harbor_vol["persistentVolumeClaim"] == {"claimName": "harbor-registry", "readOnly": True}
    # Each mount is one --registry.root, where the exporter sees it, and the interval follows.
    assert registry_args(registry_docs) == [
        "--registry.root=/registry/main",
        "--registry.root=/srv/harbor-registry",
        "--sampler.registry.interval=15m",
    ]
    # Every flag the chart passes is one the exporter knows (a typo would exit 2 at start).
    known = {name for name, _, _ in FLAGS}
    for arg in exporter_container(registry_docs)["args"]:
        assert arg.startswith("--") and arg[2:].split("=", 1)[0] in known, arg
    # The other mounts are untouched, and still read-only.
    assert set(mounts) == {"docker-socket", "host-root", "registry-main", "registry-harbor", "tmp"}
    assert all(m.get("readOnly") is True for name, (m, _) in mounts.items() if name != "tmp")


def test_registry_roots_must_be_distinct():
    root = {"name": "main", "hostPath": "/var/lib/registry"}
    with pytest.raises(Exception, match="the name \"main\" is given twice"):
        render_templates({"registry": {"roots": [root, {**root, "hostPath": "/srv/other"}]}})
    with pytest.raises(Exception, match="the mountPath /registry/main is given twice"):
        other = {"name": "b", "existingClaim": "c", "mountPath": "/registry/main/"}
        render_templates({"registry": {"roots": [root, other]}})


def test_long_release_names_fit():
    name = "a-release-name-that-is-as-long-as-helm-allows-it-be53"
    assert len(name) == 53
    for doc in render(name=name):
        if doc["kind"] in ("Service", "DaemonSet", "ServiceAccount"):
            assert len(doc["metadata"]["name"]) <= 63, doc["metadata"]["name"]


def test_fullname_override():
    docs = render({"fullnameOverride": "dse-exporter"})
    assert only(docs, "DaemonSet")["metadata"]["name"] == "dse-exporter"
    assert only(docs, "Service")["metadata"]["name"] == "dse-exporter"


# --- Prometheus Operator and Grafana objects ---------------------------------------------------------


def test_service_monitor(kps_docs):
    sm = only(kps_docs, "ServiceMonitor")
    check_crd_structure(sm)
    assert sm["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert sm["metadata"]["namespace"] == NAMESPACE
    assert sm["spec"]["selector"]["matchLabels"] == only(kps_docs, "Service")["spec"]["selector"]
    assert sm["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    (ep,) = sm["spec"]["endpoints"]
    assert ep["path"] == "/metrics" and ep["interval"] == "30s" and ep["scrapeTimeout"] == "10s"
    # Targets are named after their node, as the dashboards and alerts show `instance`.
    assert ep["relabelings"] == [
        {"sourceLabels": ["__meta_kubernetes_pod_node_name"], "targetLabel": "instance", "action": "replace"}
    ]


def test_service_monitor_options():
    docs = render({
        "serviceMonitor": {
            "enabled": True, "namespace": "prom", "interval": "1m", "scrapeTimeout": "",
            "relabelings": [], "metricRelabelings": [{"action": "drop", "regex": "docker_storage_layer_.*",
                                                      "sourceLabels": ["__name__"]}],
        }
    })  # fmt: skip
    (ep,) = only(docs, "ServiceMonitor")["spec"]["endpoints"]
    assert only(docs, "ServiceMonitor")["metadata"]["namespace"] == "prom"
    assert ep["interval"] == "1m" and "scrapeTimeout" not in ep and "relabelings" not in ep
    assert ep["metricRelabelings"][0]["action"] == "drop"


def test_prometheus_rule_is_the_projects_rules_file(kps_docs):
    rule = only(kps_docs, "PrometheusRule")
    check_crd_structure(rule)
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert rule["spec"] == {"groups": yaml.safe_load(RULES.read_text())["groups"]}


def test_prometheus_rule_passes_promtool(kps_docs, tmp_path):
    """What the PrometheusRule carries is what Prometheus loads: promtool accepts it."""
    path = tmp_path / "rendered.rules.yml"
    path.write_text(yaml.safe_dump(only(kps_docs, "PrometheusRule")["spec"], sort_keys=False))
    res = subprocess.run(["promtool", "check", "rules", str(path)], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr


def test_chart_rules_copy_is_byte_identical():
    copy = CHART / "files" / "docker-storage.rules.yml"
    assert copy.read_bytes() == RULES.read_bytes(), (
        f"{copy.relative_to(ROOT)} drifted from {RULES.relative_to(ROOT)}: cp {RULES.relative_to(ROOT)} "
        f"{copy.relative_to(ROOT)}"
    )


def test_chart_dashboard_copies_are_byte_identical():
    repo = sorted(p.name for p in DASHBOARDS.glob("*.json"))
    chart = sorted(p.name for p in (CHART / "files" / "dashboards").glob("*.json"))
    assert repo == chart == ["fleet.json", "host.json"]
    for name in repo:
        copy = CHART / "files" / "dashboards" / name
        assert copy.read_bytes() == (DASHBOARDS / name).read_bytes(), (
            f"{copy.relative_to(ROOT)} drifted from grafana/dashboards/{name}: copy it again"
        )


def test_dashboards_configmap(kps_docs):
    cm = only(kps_docs, "ConfigMap")
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert cm["metadata"]["annotations"] == {"grafana_folder": "Docker"}
    assert sorted(cm["data"]) == ["docker-storage-fleet.json", "docker-storage-host.json"]
    for name in ("host", "fleet"):
        shipped = json.loads(cm["data"][f"docker-storage-{name}.json"])
        assert shipped == json.loads((DASHBOARDS / f"{name}.json").read_text())
        assert shipped["uid"] == f"docker-storage-{name}"


def test_dashboards_label_and_namespace_are_configurable():
    docs = render({
        "dashboards": {"enabled": True, "label": "grafana/dashboard", "labelValue": "docker",
                       "namespace": "grafana"},
    })  # fmt: skip
    cm = only(docs, "ConfigMap")
    assert cm["metadata"]["labels"]["grafana/dashboard"] == "docker"
    assert "grafana_dashboard" not in cm["metadata"]["labels"]
    assert cm["metadata"]["namespace"] == "grafana"


def test_helm_test_pod(default_docs):
    pod = only(default_docs, "Pod")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    (c,) = pod["spec"]["containers"]
    assert c["image"] == "busybox:1.37"
    svc = only(default_docs, "Service")["metadata"]["name"]
    assert c["command"][:2] == ["wget", "-qO-"]
    assert c["command"][-1] == f"http://{svc}.{NAMESPACE}.svc:9818/healthz"
    assert pod["spec"]["restartPolicy"] == "Never"
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    assert "Pod" not in kinds(render({"test": {"enabled": False}}))


def test_notes_tell_how_to_reach_the_metrics():
    text = notes()
    assert f"kubectl -n {NAMESPACE} port-forward svc/{RELEASE}-docker-storage-exporter 9818:9818" in text
    assert "serviceMonitor.enabled=true" in text
    kps = notes(load_values(CHART / "ci" / "kube-prometheus-stack-values.yaml"))
    assert "labelled release=kube-prometheus-stack." in kps
    assert "grafana_dashboard=1" in kps


# --- values.schema.json ---------------------------------------------------------------------------------


def _objects_with_properties(schema: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    if "properties" in schema:
        yield path or "<top>", schema
        for key, sub in schema["properties"].items():
            yield from _objects_with_properties(sub, f"{path}.{key}")


def test_schema_is_strict_draft7():
    schema = json.loads((CHART / "values.schema.json").read_text())
    assert schema["$schema"] == "http://json-schema.org/draft-07/schema#"
    jsonschema.Draft7Validator.check_schema(schema)
    loose = [p for p, s in _objects_with_properties(schema) if s.get("additionalProperties") is not False]
    assert loose == [], f"these objects accept any key: {loose}"
    # Every value the chart documents is in the schema and the other way round (`global` is
    # Helm's own, for subcharts).
    defaults = yaml.safe_load((CHART / "values.yaml").read_text())
    assert set(schema["properties"]) - {"global"} == set(defaults)
    jsonschema.validate(defaults, schema)


def _root(root: dict[str, Any]) -> dict[str, Any]:
    return {"registry": {"roots": [root]}}


BAD_VALUES = [
    ({"image": {"tag": 5}}, "/image/tag", "want string"),
    ({"serviceMonitor": {"enabeld": True}}, "/serviceMonitor", "'enabeld' not allowed"),
    ({"resources": "big"}, "/resources", "want object"),
    ({"hostRoot": {"enabled": True, "path": "var/lib/docker"}}, "/hostRoot/path", "'^/'"),
    ({"tolerations": {"operator": "Exists"}}, "/tolerations", "want array"),
    ({"extraArgs": "--log.level=debug"}, "/extraArgs", "want array"),
    ({"service": {"port": 70000}}, "/service/port", "maximum"),
    ({"image": {"pullPolicy": "Sometimes"}}, "/image/pullPolicy", "must be one of"),
    ({"serviceMonitor": {"interval": "30 seconds"}}, "/serviceMonitor/interval", "30 seconds"),
    ({"dashbaords": {"enabled": True}}, "at ''", "'dashbaords' not allowed"),
    (_root({"name": "main", "hostPath": "var/lib/registry"}), "/registry/roots/0/hostPath", "'^/'"),
    (_root({"name": "main"}), "/registry/roots/0", "oneOf"),  # no volume source
    (_root({"name": "m", "hostPath": "/r", "existingClaim": "c"}), "/registry/roots/0", "oneOf"),  # two
    (_root({"name": "Main_1", "hostPath": "/r"}), "/registry/roots/0/name", "Main_1"),
    (_root({"name": "m", "hostPath": "/r", "readOnly": False}), "/registry/roots/0", "'readOnly' not"),
    ({"registry": {"roots": [], "interval": "5 minutes"}}, "/registry/interval", "5 minutes"),
]


@pytest.mark.parametrize(("values", "where", "what"), BAD_VALUES, ids=lambda v: json.dumps(v))
def test_bad_values_are_rejected_with_a_readable_message(values, where, what):
    with pytest.raises(helm.HelmValuesError) as exc:
        render_templates(values)
    message = str(exc.value)
    assert where in message and what in message, message
    report = helm.lint(CHART, values, namespace=NAMESPACE)
    assert any(where in e and what in e for e in report["errors"]), report
