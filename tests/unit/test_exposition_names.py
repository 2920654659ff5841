"""Names that stress the exposition format (issue 6, "Bad input").

Image tags, container, volume and registry names, paths and engine identity with unicode,
quotes, backslashes, newlines, `{}=`, NUL, empty strings and 10k-character names go through
the real collector (`StorageCollector` over a real `Store` with synthetic snapshots). The
text exposition must pass `promtool check metrics` and both expositions (text and
OpenMetrics) must parse back to the very same label values.

promtool is required: a missing /usr/bin/promtool fails these tests, it does not skip them.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics
from prometheus_client.parser import text_string_to_metric_families as parse_text

from exporter.collector import StorageCollector
from exporter.imagesizes import split_reference
from exporter.model import (
    CONTAINER_STATES,
    BuildCache,
    BuildCacheSnapshot,
    Container,
    ContainerScan,
    DiskUsage,
    EngineInfo,
    EngineSnapshot,
    Filesystem,
    FilesystemSnapshot,
    Image,
    LayerScan,
    SamplerStatus,
    ScanSnapshot,
    Volume,
    VolumeScan,
)
from exporter.samplers import EngineSampler, Store
from exporter.scan import ScanSampler
from exporter.sources.du import Usage, Walker
from exporter.stores.inventory import OWNERS
from tests.unit.test_layout import build_standard
from tests.unit.test_sampler_replay import ReplayClient

PROMTOOL = "/usr/bin/promtool"
P = "docker_storage_"

NASTY = [
    "",
    " ",
    "\t",
    "\x00",
    "a\x00b",
    '"',
    "\\",
    "\\n",  # a backslash and an n: must not come back as a newline
    "\n",
    "\r\n",
    'a"b\\c\nd',
    "{}=,",
    'x{a="b"} 1',
    "# HELP x y",
    "# TYPE x counter",
    "é日本語🐳",
    "\u2028\u2029\x85",
    "\ufeff",
    "\x7f\x1b[31m",
    "x" * 10_000,
    "🐳" * 2_500,
    "NaN",
    "+Inf",
    "<none>",
    "sha256:" + "a" * 64,
    "ghcr.io/acme/api:2.1",
    "localhost:5000/a/b:v1",
    "123456789012.dkr.ecr.eu-west-1.amazonaws.com/team/app:prod",
    "[::1]:5000/x:y",
    "a:b:c",
    "a@sha256:" + "b" * 64,
]
NAME = st.one_of(
    st.sampled_from(NASTY),
    st.text(max_size=40),  # any unicode a str can carry in UTF-8
    st.text(alphabet='\\"\n\r{}=,:/@ \x00é🐳#', max_size=20),
)
USAGE = st.builds(
    lambda d, a, f: Usage(d, a, f, 0, False),
    st.integers(0, 2**40),
    st.integers(0, 2**40),
    st.integers(0, 10**6),
)

SPEC = settings(
    derandomize=True,
    database=None,
    max_examples=25,  # each example runs promtool twice
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


# --- the world from a spec of names ---------------------------------------------------------


def _unique_refs(tags: list[str]) -> tuple[str, ...]:
    """A Docker image's references are distinct, and so are their (repository, tag) pairs."""
    seen: dict[tuple[str, str], str] = {}
    for t in tags:
        seen.setdefault(split_reference(t), t)
    return tuple(sorted(seen.values()))


@st.composite
def specs(draw: st.DrawFn) -> dict[str, Any]:
    return {
        "info": draw(st.lists(NAME, min_size=6, max_size=6)),
        "images": draw(st.lists(st.tuples(st.lists(NAME, max_size=3), NAME), max_size=4)),
        "containers": draw(st.lists(st.tuples(NAME, NAME), max_size=4, unique_by=lambda c: c[0])),
        "volumes": draw(st.lists(st.tuples(NAME, NAME), max_size=4, unique_by=lambda v: v[0])),
        "root_dirs": draw(st.lists(NAME, max_size=4, unique=True)),
        "layers": draw(st.lists(NAME, max_size=3)),
        "filesystems": draw(st.lists(st.tuples(NAME, NAME), max_size=3, unique=True)),
        "endpoints": draw(st.lists(NAME, max_size=3, unique=True)),
        "top_n": draw(st.sampled_from([10_000, 10_000, 1])),
    }


def everything(names: list[str]) -> dict[str, Any]:
    """One spec that uses every given name in every place a name can go."""
    pairs = list(zip(names, reversed(names), strict=True))
    return {
        "info": (names * 6)[:6],
        "images": [([n, f"{n}:{n}", f"reg.example/{n}:v1"], n) for n in names],
        "containers": pairs,
        "volumes": pairs,
        "root_dirs": names,
        "layers": names,
        "filesystems": pairs,
        "endpoints": names,
        "top_n": 10_000,
    }


def sha(i: int) -> str:
    return f"sha256:{i:012x}" + "0" * 52


def build_store(spec: dict[str, Any]) -> Store:
    images = tuple(
        Image(
            id=sha(i),
            tags=_unique_refs(tags),
            parent_id="",
            created=1_700_000_000.0 + i,
            size=1000 - i,  # already sorted biggest first, as the sampler leaves them
            unique_size=10 if i % 2 else None,
            containers=i % 3,
            state="in_use" if i % 3 else "unused",
            registry=registry,
        )
        for i, (tags, registry) in enumerate(spec["images"])
    )
    engine = EngineSnapshot(
        info=EngineInfo(*spec["info"]),
        images=images,
        containers=tuple(
            Container(f"{i:064x}", name, sha(0), image, CONTAINER_STATES[i % len(CONTAINER_STATES)], ())
            for i, (name, image) in enumerate(spec["containers"])
        ),
        volumes=tuple(Volume(name, driver, f"/v/{name}", 1) for name, driver in spec["volumes"]),
        image_usage=DiskUsage(used=5, reclaimable=3),
        skipped=0,
    )
    u = Usage(4096, 10, 1, 0, False)
    scan = ScanSnapshot(
        root_dir=spec["info"][5],
        driver="overlay2",
        attribution=True,
        attribution_reason="",
        root_dirs={name: u for name in spec["root_dirs"]},
        owners=dict.fromkeys(OWNERS, u),
        layers=tuple(
            LayerScan(f"sha256:{i:064x}", diff, f"cache{i}", 10, u, u, 1)
            for i, diff in enumerate(spec["layers"])
        ),
        containers=tuple(
            ContainerScan(f"{i:064x}", name, image, "running", u, u)
            for i, (name, image) in enumerate(spec["containers"])
        ),
        volumes=tuple(VolumeScan(name, driver, 1, u, u) for name, driver in spec["volumes"]),
        orphans=(),
        walks={"layer": 1},
        cached_layers=0,
        skipped=0,
        errors=0,
    )
    store = Store()
    store.publish(SamplerStatus("engine", success=True, last_success=1.0, runs=1), engine)
    store.publish(SamplerStatus("scan", success=True, last_success=1.0, runs=1), scan)
    store.publish(
        SamplerStatus("filesystem", success=True, last_success=1.0, runs=1),
        FilesystemSnapshot(tuple(Filesystem(p, m, 100, 50, 10, 5, False) for p, m in spec["filesystems"])),
    )
    store.publish(
        SamplerStatus("build_cache", success=True, last_success=1.0, runs=1),
        BuildCacheSnapshot(BuildCache(1, 0, 1, 1)),
    )
    return store


def expected_labels(spec: dict[str, Any]) -> dict[str, tuple[tuple[str, ...], list[tuple[str, ...]]]]:
    """Sample name -> (label names, every label-value tuple) with nothing folded (top_n huge)."""
    images = [(sha(i), _unique_refs(tags), reg) for i, (tags, reg) in enumerate(spec["images"])]

    def image_key(iid: str, tags: tuple[str, ...]) -> tuple[str, ...]:
        short = iid.split(":", 1)[1][:12]
        return (short, "<none>", "<none>") if not tags else (short, *split_reference(tags[0]))

    return {
        P + "engine_info": (
            ("engine", "version", "api_version", "storage_driver", "image_store", "root_dir"),
            [tuple(spec["info"])],
        ),
        P + "image_size_bytes": (("image_id", "repository", "tag"), [image_key(i, t) for i, t, _ in images]),
        P + "image_tag_info": (
            ("image_id", "repository", "tag"),
            [(i.split(":", 1)[1][:12], *split_reference(ref)) for i, tags, _ in images for ref in tags],
        ),
        P + "registry_images": (("registry",), [(r,) for r in sorted({r for _, _, r in images})]),
        P + "container_rw_bytes": (("container", "image"), list(spec["containers"])),
        P + "container_log_bytes": (("container", "image"), list(spec["containers"])),
        P + "volume_disk_bytes": (("volume", "driver"), list(spec["volumes"])),
        P + "root_disk_bytes": (("dir",), [(d,) for d in spec["root_dirs"]]),
        P + "layer_size_bytes": (
            ("diff_id",),
            [(k,) for k in sorted({d.split(":", 1)[-1][:12] for d in spec["layers"]})],
        ),
        P + "filesystem_size_bytes": (("mountpoint", "path"), [(m, p) for p, m in spec["filesystems"]]),
        P + "engine_requests_total": (("endpoint",), [(e,) for e in spec["endpoints"]]),
    }


# --- exposition helpers -----------------------------------------------------------------------


def expositions(store: Store, endpoints: list[str], top_n: int) -> tuple[str, str]:
    counts = {e: i + 1 for i, e in enumerate(endpoints)}
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StorageCollector(store, top_n=top_n, request_counts=lambda: counts))
    return generate_latest(registry).decode("utf-8"), generate_openmetrics(registry).decode("utf-8")


def promtool(text: str) -> subprocess.CompletedProcess[str]:
    # No shutil.which fallback and no skip: without promtool this raises and the test fails.
    return subprocess.run(
        [PROMTOOL, "check", "metrics"], input=text, capture_output=True, text=True, timeout=60, check=False
    )


def assert_promtool_accepts(text: str, openmetrics: bool = False) -> None:
    proc = promtool(text)
    if not openmetrics:
        assert proc.returncode == 0, (proc.stdout + proc.stderr)[:3000]
        return
    # promtool 2.x lints with the text-format parser: an OpenMetrics counter's `_total` sample
    # reads as a family of its own without HELP. That, and only that, is allowed.
    counters = {
        line.split()[2]
        for line in text.splitlines()
        if line.startswith("# TYPE ") and line.endswith(" counter")
    }
    problems = [line for line in (proc.stdout + proc.stderr).splitlines() if line.strip()]
    allowed = {f"{c}_total no help text" for c in counters}
    assert proc.returncode in (0, 3), (proc.stdout + proc.stderr)[:3000]
    assert set(problems) <= allowed, [p for p in problems if p not in allowed][:20]


def served_errors(text: str) -> float:
    """collector_errors_total of an exposition: a group that raised is left out of the scrape
    and only counted there, so an exposition that parses may still lack families."""
    return next(s for f in parse_text(text) if f.name == P + "collector_errors" for s in f.samples).value


def label_values(families: Any) -> dict[str, list[dict[str, str]]]:
    out: dict[str, list[dict[str, str]]] = {}
    for fam in families:
        for s in fam.samples:
            out.setdefault(s.name, []).append(dict(s.labels))
    return out


def assert_round_trip(spec: dict[str, Any], parsed: dict[str, list[dict[str, str]]]) -> None:
    for sample_name, (keys, want) in expected_labels(spec).items():
        got = sorted(tuple(labels[k] for k in keys) for labels in parsed.get(sample_name, []))
        assert got == sorted(want), sample_name


def check(spec: dict[str, Any]) -> None:
    text, om = expositions(build_store(spec), spec["endpoints"], spec["top_n"])
    assert_promtool_accepts(text)
    assert_promtool_accepts(om, openmetrics=True)
    assert om.endswith("# EOF\n")
    parsed_text = label_values(parse_text(text))
    parsed_om = label_values(parse_openmetrics(om))
    for parsed in (parsed_text, parsed_om):
        assert parsed[P + "collector_errors_total"] == [{}]
    assert next(s for f in parse_text(text) if f.name == P + "collector_errors" for s in f.samples).value == 0
    if spec["top_n"] >= 10_000:
        assert_round_trip(spec, parsed_text)
        assert_round_trip(spec, parsed_om)


# --- the tests -------------------------------------------------------------------------------


def test_promtool_is_installed() -> None:
    assert os.access(PROMTOOL, os.X_OK), f"{PROMTOOL} is required (apt-get install prometheus)"


@SPEC
@given(spec=specs())
@example(spec=everything(NASTY))
@example(spec=everything([""]))
@example(spec=everything(["x" * 10_000, "\x00" * 100]))
@example(spec={**everything(NASTY[:8]), "top_n": 1})
@example(spec={**everything(["\\", '"', "\n"]), "top_n": 0})
def test_nasty_names_survive_both_expositions(spec: dict[str, Any]) -> None:
    check(spec)


# --- names that reach the labels through the real samplers --------------------------------------


class OneShotClient(ReplayClient):
    """EngineClient stand-in answering from one API 1.52-shaped document."""

    def __init__(self, doc: dict[str, Any]) -> None:
        super().__init__({**doc, "version": {**doc["version"], "ApiVersion": "1.52"}})

    def df(self, types: list[str] | None = None) -> Any:
        return {"ImageUsage": {"TotalSize": 1, "Reclaimable": 0, "Items": []}}


def engine_doc(tag: str, name: str) -> dict[str, Any]:
    return {
        "version": {"Version": name, "ApiVersion": "1.52"},
        "info": {"Driver": name, "DockerRootDir": f"/var/lib/{name}", "DriverStatus": []},
        "images": [{"Id": sha(1), "RepoTags": [tag], "Size": 10, "Created": 1}],
        "containers": [{"Id": "c" * 64, "Names": [f"/{name}"], "ImageID": sha(1), "State": "running"}],
        "volumes": {"Volumes": [{"Name": name, "Driver": "local"}]},
    }


@SPEC
@given(tag=NAME, name=NAME)
@example(tag='reg.example:5000/we"ird\\repo\n:v"1', name="\x00")
def test_names_from_an_engine_response_survive(tag: str, name: str) -> None:
    """Tags and names as the engine sends them, through EngineSampler and the collector."""
    store = Store()
    doc = json.loads(json.dumps(engine_doc(tag, name)))  # as the wire would carry them
    assert EngineSampler(store, OneShotClient(doc)).run()  # type: ignore[arg-type]
    text, om = expositions(store, [], 50)
    assert_promtool_accepts(text)
    assert_promtool_accepts(om, openmetrics=True)
    for parsed in (label_values(parse_text(text)), label_values(parse_openmetrics(om))):
        (info,) = parsed[P + "engine_info"]
        assert (info["version"], info["storage_driver"], info["root_dir"]) == (name, name, f"/var/lib/{name}")
        if tag and "<none>" not in tag:
            assert [(t["repository"], t["tag"]) for t in parsed[P + "image_tag_info"]] == [
                split_reference(tag)
            ]


def test_lone_surrogate_from_the_engine_does_not_break_the_scrape() -> None:
    """`"\\ud800"` is valid JSON and Python decodes it to a lone surrogate, which UTF-8 cannot
    encode: every scrape would then fail in generate_latest, outside the collector's guard."""
    store = Store()
    doc = json.loads('{"t": "app\\ud800:1"}')
    assert EngineSampler(store, OneShotClient(engine_doc(doc["t"], "n"))).run()  # type: ignore[arg-type]
    text, om = expositions(store, [], 50)  # must not raise UnicodeEncodeError
    assert_promtool_accepts(text)
    assert_promtool_accepts(om, openmetrics=True)
    # Served, not dropped: no group failed, and the image carries the tag with U+FFFD for
    # the surrogate.
    assert served_errors(text) == 0
    for parsed in (label_values(parse_text(text)), label_values(parse_openmetrics(om))):
        (size,) = parsed[P + "image_size_bytes"]
        assert re.fullmatch("app\ufffd+", size["repository"]) and size["tag"] == "1", size


def test_non_utf8_dir_names_in_the_docker_root_do_not_break_the_scrape() -> None:
    """A volume or container dir whose name is not UTF-8 (made by hand, or on a Latin-1 host)
    comes back from os.listdir with surrogate escapes; its label must still encode."""
    with tempfile.TemporaryDirectory() as tmp:
        t = build_standard(Path(tmp) / "docker")
        root = os.fsencode(str(t.root))
        os.makedirs(os.path.join(root, b"volumes", b"caf\xe9", b"_data"))
        os.makedirs(os.path.join(root, b"containers", b"\xff" * 16))
        store = Store()
        info = EngineInfo("docker", "20.10", "1.41", "overlay2", "graphdriver", str(t.root))
        store.publish(SamplerStatus("engine", success=True), EngineSnapshot(info, (), (), (), None))
        sampler = ScanSampler(store, Walker(workers=1))
        try:
            assert sampler.run(), store.status("scan").last_error
        finally:
            sampler.walker.close()
        text, om = expositions(store, [], 50)  # must not raise UnicodeEncodeError
        assert_promtool_accepts(text)
        assert_promtool_accepts(om, openmetrics=True)
        # Served, not dropped: no group failed, and both dirs are there with U+FFFD in their name.
        assert served_errors(text) == 0
        for parsed in (label_values(parse_text(text)), label_values(parse_openmetrics(om))):
            volumes = [v["volume"] for v in parsed[P + "volume_disk_bytes"]]
            assert [v for v in volumes if re.fullmatch("caf\ufffd+", v)], volumes
            containers = [c["container"] for c in parsed[P + "container_log_bytes"]]
            assert [c for c in containers if re.fullmatch("\ufffd+", c)], containers
