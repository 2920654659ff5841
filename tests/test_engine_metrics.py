"""The engine sampler's numbers against the engine's own: the Docker CLI and /system/df.

Tolerance: none. Every figure here is a count or a byte total that Docker itself reports
exactly, so ours must be equal.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections import Counter

import pytest

from exporter.sources.bolt import BOLT_IMPL
from exporter.sources.du import WALK_IMPL
from tests.conftest import FAST
from tests.harness.exporter import ExporterProcess, sampled_after, value
from tests.harness.seed import PUSHED, REGISTRY_IMAGES, TWO_NAMES
from tests.harness.truth import cli_df_summary, human_size, ids, image_states, system_df

P = "docker_storage_"


@pytest.fixture(scope="module")
def samples(exporter):
    # Samples taken after this module started: earlier tests may have changed the engine.
    return exporter.wait_until(
        sampled_after(time.time(), "engine", "filesystem", "build_cache"), timeout=30, what="fresh samples"
    )


def short(image_id: str) -> str:
    return image_id.split(":", 1)[-1][:12]


def test_image_states_match_the_cli(engine, samples):
    truth = image_states(engine)
    ours = {
        s: value(samples, P + "images", state=s) for s in ("in_use", "unused", "dangling", "intermediate")
    }
    assert ours == {s: float(truth[s]) for s in ours}
    # The seed made each state on purpose; if it did not, the comparison above proves little.
    assert ours == {"in_use": 3.0, "unused": 6.0, "dangling": 1.0, "intermediate": 2.0}
    assert sum(ours.values()) == len(ids(engine, "images", "-a", "-q", "--no-trunc"))


def test_image_sizes_match_system_df(engine, samples):
    df = system_df(engine)
    assert len(df["Images"]) == 10
    for img in df["Images"]:
        labels = {"image_id": short(img["Id"])}
        assert value(samples, P + "image_size_bytes", **labels) == img["Size"], img["RepoTags"]
        assert value(samples, P + "image_unique_bytes", **labels) == img["Size"] - img["SharedSize"], img[
            "RepoTags"
        ]
        assert value(samples, P + "image_containers", **labels) == img["Containers"]
        assert value(samples, P + "image_created_timestamp_seconds", **labels) == img["Created"]
    # Intermediate images: all their layers belong to a descendant, so nothing is unique.
    listed = {short(i["Id"]) for i in df["Images"]}
    for labels, v in samples[P + "image_unique_bytes"]:
        if labels["image_id"] not in listed:
            assert labels["repository"] == "<none>" and v == 0


def test_image_totals_match_system_df(engine, samples):
    df = system_df(engine)
    used = df["LayersSize"]
    in_use_unique = sum(i["Size"] - i["SharedSize"] for i in df["Images"] if i["Containers"] > 0)
    assert value(samples, P + "used_bytes", object="images") == used
    assert value(samples, P + "reclaimable_bytes", object="images") == used - in_use_unique
    # And as `docker system df` prints them.
    row = cli_df_summary(engine)["Images"]
    assert row["Size"] == human_size(value(samples, P + "used_bytes", object="images"))
    reclaim = value(samples, P + "reclaimable_bytes", object="images")
    assert row["Reclaimable"] == f"{human_size(reclaim)} ({int(reclaim * 100 // used)}%)"
    assert int(row["TotalCount"]) == len(df["Images"])
    assert int(row["Active"]) == value(samples, P + "images", state="in_use")


def test_labels_and_tags(samples):
    app = [lbl for lbl, _ in samples[P + "image_size_bytes"] if lbl["repository"] == "dse-app"]
    assert len(app) == 1 and app[0]["tag"] == "latest"  # first tag of the image, sorted
    tags = {
        (lbl["repository"], lbl["tag"])
        for lbl, _ in samples[P + "image_tag_info"]
        if lbl["image_id"] == app[0]["image_id"]
    }
    assert tags == {("dse-app", "latest"), ("dse-app", "v1")}
    untagged = [lbl for lbl, _ in samples[P + "image_size_bytes"] if lbl["repository"] == "<none>"]
    assert len(untagged) == 3 and all(lbl["tag"] == "<none>" for lbl in untagged)


def registry_by_rule(entry: dict) -> str:
    """The documented rule, applied to one entry of the engine's own /images/json: the
    registry of its RepoDigests, else of a tag naming a registry host, else docker.io for
    plain names, else none. Written here from Docker's reference grammar, not imported."""

    def host(ref: str) -> str:
        first, sep, _ = ref.split("@", 1)[0].partition("/")
        return first.lower() if sep and ("." in first or ":" in first or first == "localhost") else ""

    digests = sorted(host(d) or "docker.io" for d in entry.get("RepoDigests") or [] if "<none>" not in d)
    tags = sorted(t for t in entry.get("RepoTags") or [] if "<none>" not in t)
    hosts = [host(t) for t in tags if host(t)]
    return digests[0] if digests else hosts[0] if hosts else "docker.io" if tags else "none"


def test_registries_follow_digests_then_host_tags_with_the_listing_as_oracle(engine, seeded, samples):
    api = engine.api()
    try:
        listing = api.images(all=True)
    finally:
        api.close()
    by_rule = Counter(registry_by_rule(entry) for entry in listing)
    reg = {lbl["registry"]: v for lbl, v in samples[P + "registry_images"]}
    assert reg == {k: float(v) for k, v in by_rule.items()}
    assert sum(reg.values()) == len(listing)  # each image once
    # What the seed made, spelled out: app:v2 is also ghcr.io/acme/tool:1.0, so ghcr.io has two
    # images (by the first tag in sorted order it would read docker.io); the image pushed to the
    # loopback registry counts there, not for the ECR or localhost:5000 names it also carries.
    assert reg == {
        "docker.io": 4.0,  # dse-base, dse-app, dse-old, dse-bk
        "ghcr.io": 2.0,  # ghcr.io/dse/tool:1, app:v2
        "123456789012.dkr.ecr.us-east-1.amazonaws.com": 1.0,
        "localhost:5000": 1.0,
        seeded.pushed_to: 1.0,  # app:v3, by its RepoDigests
        "none": 3.0,  # two intermediate, one dangling
    }
    pushed = next(e for e in listing if PUSHED[0] in (e.get("RepoTags") or []))
    assert [d.split("/", 1)[0] for d in pushed["RepoDigests"]] == [seeded.pushed_to]
    # Unique bytes by registry: the sum of `docker system df -v` UNIQUE SIZE of those images.
    df = {i["Id"]: i["Size"] - i["SharedSize"] for i in system_df(engine)["Images"]}
    unique_by_rule: Counter[str] = Counter()
    for entry in listing:
        unique_by_rule[registry_by_rule(entry)] += df.get(entry["Id"], 0)  # intermediates: 0
    for registry, unique in unique_by_rule.items():
        assert value(samples, P + "registry_unique_bytes", registry=registry) == unique, registry
    for ref in (*REGISTRY_IMAGES, TWO_NAMES[1]):
        host = ref.split("/", 1)[0]
        # Each of these was imported on its own: no layer shared, unique == size.
        sizes = [i["Size"] for i in listing if registry_by_rule(i) == host]
        assert value(samples, P + "registry_unique_bytes", registry=host) == sum(sizes) > 0


def test_containers_match_ps(engine, seeded, samples):
    states = Counter(engine.docker("ps", "-a", "--format", "{{.State}}").split())
    for state in ("created", "running", "paused", "restarting", "removing", "exited", "dead"):
        assert value(samples, P + "containers", state=state) == states.get(state, 0), state
    assert Counter(seeded.containers.values()) == +Counter(
        {s: int(value(samples, P + "containers", state=s)) for s in states}
    )


def test_volumes_match_volume_ls_and_df(engine, seeded, samples):
    names = ids(engine, "volume", "ls", "-q")
    df = system_df(engine)
    in_use = sum(1 for v in df["Volumes"] if v["UsageData"]["RefCount"] > 0)
    assert value(samples, P + "volumes", state="in_use") == in_use == len(seeded.volumes_used)
    assert value(samples, P + "volumes", state="unused") == len(names) - in_use
    row = cli_df_summary(engine)["Local Volumes"]
    assert int(row["TotalCount"]) == len(names) and int(row["Active"]) == in_use


def test_build_cache_matches_df(engine, samples):
    df = system_df(engine)
    records = df["BuildCache"]
    assert records, "the seed's BuildKit build left no cache records"
    size = sum(r["Size"] for r in records if not r["Shared"])
    in_use = sum(r["Size"] for r in records if r["InUse"] and not r["Shared"])
    assert value(samples, P + "build_cache_records") == len(records)
    assert value(samples, P + "build_cache_bytes") == size
    assert value(samples, P + "used_bytes", object="build_cache") == size
    assert value(samples, P + "reclaimable_bytes", object="build_cache") == size - in_use
    row = cli_df_summary(engine)["Build Cache"]
    assert row["Size"] == human_size(size) and int(row["TotalCount"]) == len(records)


def test_engine_info(engine, samples):
    ((labels, v),) = samples[P + "engine_info"]
    assert v == 1
    assert labels["root_dir"] == str(engine.data_root)
    assert labels["storage_driver"] == "overlay2"
    assert labels["image_store"] == "graphdriver"
    assert labels["engine"] == "docker"
    version = engine.docker("version", "--format", "{{.Server.Version}} {{.Server.APIVersion}}").split()
    assert [labels["version"], labels["api_version"]] == version
    assert value(samples, P + "engine_up") == 1


def test_filesystem_matches_statvfs(engine, samples):
    st = os.statvfs(engine.data_root)
    ((labels, size),) = samples[P + "filesystem_size_bytes"]
    assert labels["path"] == str(engine.data_root)
    assert size == st.f_blocks * st.f_frsize
    assert value(samples, P + "filesystem_files", **labels) == st.f_files
    # Free space moves while tests write; 256 MiB / 100k inodes is far above that churn and
    # far below any wrong-field mistake (f_bfree vs f_bavail differ by the 5 % reserve).
    avail = value(samples, P + "filesystem_avail_bytes", **labels)
    assert abs(avail - st.f_bavail * st.f_frsize) < 256 * 2**20
    assert abs(value(samples, P + "filesystem_files_free", **labels) - st.f_ffree) < 100_000
    assert value(samples, P + "filesystem_readonly", **labels) == 0
    # The mount point is the filesystem's own (what node_exporter labels), not dockerd's
    # bind mount of its root onto itself, which is what `df` would name.
    assert os.stat(labels["mountpoint"]).st_dev == os.stat(engine.data_root).st_dev
    assert not labels["mountpoint"].startswith(str(engine.data_root))


def test_sampler_health(samples):
    for sampler in ("engine", "filesystem", "build_cache"):
        assert value(samples, P + "sampler_success", sampler=sampler) == 1
        assert value(samples, P + "sampler_failures_total", sampler=sampler) == 0
        assert value(samples, P + "sampler_last_success_timestamp_seconds", sampler=sampler) > 0
    assert value(samples, P + "sampler_skipped_items", sampler="engine") == 0
    version = __import__("exporter").__version__
    build = value(samples, P + "exporter_build_info", version=version, walk=WALK_IMPL, bolt_walk=BOLT_IMPL)
    assert build == 1


def test_only_get_requests_reach_the_engine(exporter, proxy):
    requests = proxy.recorded()
    methods = Counter(m for m, _ in requests)
    assert set(methods) <= {"GET", "HEAD"}, methods
    paths = [p for _, p in requests]
    for endpoint in ("/version", "/info", "/images/json", "/containers/json", "/volumes", "/system/df"):
        assert any(endpoint in p for p in paths), endpoint
    # dockerd must never be asked to walk container layers.
    assert not any("size=1" in p or "size=true" in p for p in paths if "/containers/json" in p)


def test_image_inspect_is_cached(engine, exporter):
    """Calls per cycle do not grow with the number of images once the cache is warm."""
    n_images = len(ids(engine, "images", "-a", "-q", "--no-trunc"))
    first = exporter.scrape()
    runs = value(first, P + "sampler_runs_total", sampler="engine")
    exporter.wait_until(
        lambda s: value(s, P + "sampler_runs_total", sampler="engine") >= runs + 2,
        timeout=30,
        what="two more engine samples",
    )
    later = exporter.scrape()
    for endpoint in ("/images/{id}/json", "/images/{id}/history"):
        before = value(first, P + "engine_requests_total", endpoint=endpoint)
        assert before == n_images, endpoint  # one per image, ever
        assert value(later, P + "engine_requests_total", endpoint=endpoint) == before
    # While the listing calls go on every cycle.
    assert value(later, P + "engine_requests_total", endpoint="/images/json") >= runs + 2


def test_cap_folds_the_rest_into_other(engine, seeded, exporter, tmp_path):
    top_n = 3
    exp = ExporterProcess(engine.host, tmp_path / "log", [*FAST, "--metrics.top-n", str(top_n)])
    exp.start()
    try:
        s = exp.wait_until(sampled_after(0, "engine", "scan"), timeout=30, what="engine and scan samples")
    finally:
        exp.stop()
    # The scan's per-item families fold the same way; the uncapped session exporter has them all.
    full = exporter.wait_until(sampled_after(time.time(), "scan"), timeout=30, what="a fresh scan")
    for fam in ("layer_disk_bytes", "layer_files", "container_rw_bytes", "volume_disk_bytes", "volume_files"):
        everything = full[P + fam]
        capped = s[P + fam]
        n = len(everything)
        assert n > top_n or fam.startswith("volume"), fam  # the seed has 2 volumes: nothing to fold
        assert len(capped) == min(n, top_n + (1 if n > top_n else 0)), fam
        assert sum(v for _, v in capped) == sum(v for _, v in everything), fam  # sums preserved
        assert value(s, P + "series_folded", family=P + fam) == max(0, n - top_n), fam
    api = engine.api()
    try:
        images = api.images(all=True)
    finally:
        api.close()
    sizes = sorted((i["Size"] for i in images), reverse=True)
    series = s[P + "image_size_bytes"]
    assert len(series) == top_n + 1
    other = value(s, P + "image_size_bytes", image_id="__other__")
    assert other == sum(sizes[top_n:])
    assert sum(v for _, v in series) == sum(sizes)  # sums preserved
    kept = sorted((v for lbl, v in series if lbl["image_id"] != "__other__"), reverse=True)
    assert kept == sizes[:top_n]
    assert value(s, P + "series_folded", family=P + "image_size_bytes") == len(sizes) - top_n
    assert value(s, P + "image_containers", image_id="__other__") + sum(
        v for lbl, v in s[P + "image_containers"] if lbl["image_id"] != "__other__"
    ) == len(seeded.containers)


def test_exposition_passes_promtool(exporter):
    text = exporter.scrape_text()
    res = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr


def test_http_endpoints(exporter):
    status, _headers, body = exporter.get("/")
    assert status == 200 and b"/metrics" in body
    for sampler in (b"engine", b"filesystem", b"build_cache"):
        assert sampler in body
    assert exporter.get("/healthz")[0] == 200
    assert exporter.get("/nope")[0] == 404
    import urllib.request

    req = urllib.request.Request(exporter.url + "/metrics", method="POST", data=b"x")
    try:
        urllib.request.urlopen(req, timeout=5)
        raise AssertionError("POST was served")
    except urllib.error.HTTPError as e:
        assert e.code == 405 and e.headers["Allow"] == "GET, HEAD"
    head = urllib.request.Request(exporter.url + "/metrics", method="HEAD")
    with urllib.request.urlopen(head, timeout=5) as r:
        assert r.status == 200 and r.read() == b""
    om = urllib.request.Request(
        exporter.url + "/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"}
    )
    with urllib.request.urlopen(om, timeout=5) as r:
        assert r.headers["Content-Type"].startswith("application/openmetrics-text")
        assert r.read().rstrip().endswith(b"# EOF")


def test_one_summary_log_line_per_sample(exporter):
    import json

    lines = [json.loads(line) for line in exporter.log.read_text().splitlines() if line.startswith("{")]
    samples = [entry for entry in lines if entry.get("event") == "sample"]
    engine = [e for e in samples if e["sampler"] == "engine"]
    assert engine and all("duration_seconds" in e and "images" in e for e in engine)
    assert all(e["level"] in ("info", "warning", "error", "debug") for e in lines)
