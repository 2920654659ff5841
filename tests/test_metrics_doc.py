"""docs/metrics.md and the real exposition must agree: names, types and label sets."""

from __future__ import annotations

import re
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

DOC = Path(__file__).resolve().parents[1] / "docs" / "metrics.md"


CONTAINERD_ONLY = "on the containerd image store only"  # the heading of those families
DESKTOP_ONLY = "docker desktop's disk image"  # served only where Desktop's disk image is found
REGISTRY_ONLY = "from the registry sampler"  # served only with --registry.root
SETUP_ONLY = (DESKTOP_ONLY, REGISTRY_ONLY)  # headings of families only some hosts serve, besides containerd's


def documented(containerd: bool | None = False, only: str = "") -> dict[str, tuple[str, frozenset[str]]]:
    """The families the doc lists: all but those of the containerd store and of SETUP_ONLY
    (False), only the containerd store's (True), or all (None); `only`: those under that heading."""
    rows = {}
    section = ""
    for line in DOC.read_text().splitlines():
        if line.startswith("#"):
            section = line.lower()
        m = re.match(r"\| `(docker_storage_\w+)` \| (\w+) \|([^|]*)\|", line)
        if only:
            wanted = only in section
        elif containerd is None:
            wanted = True
        elif any(h in section for h in SETUP_ONLY):
            wanted = False
        else:
            wanted = (CONTAINERD_ONLY in section) == containerd
        if m and wanted:
            labels = frozenset(x.strip() for x in m.group(3).split(",") if x.strip())
            rows[m.group(1)] = (m.group(2), labels)
    return rows


def exported(text: str) -> dict[str, tuple[str, frozenset[str]]]:
    out = {}
    for fam in text_string_to_metric_families(text):
        if not fam.name.startswith("docker_storage_"):
            continue
        name = fam.name + ("_total" if fam.type == "counter" else "")
        labels = frozenset(k for s in fam.samples for k in s.labels)
        out[name] = (fam.type, labels)
    return out


def test_doc_lists_every_exported_family_and_nothing_else(exporter):
    doc, live = documented(), exported(exporter.scrape_text())
    assert len(doc) > 20
    assert sorted(set(live) - set(doc)) == [], "exported but not in docs/metrics.md"
    assert sorted(set(doc) - set(live)) == [], "in docs/metrics.md but not exported"
    for name, (kind, labels) in live.items():
        assert doc[name] == (kind, labels), name


def test_every_family_has_help(exporter):
    for fam in text_string_to_metric_families(exporter.scrape_text()):
        if fam.name.startswith("docker_storage_"):
            assert len(fam.documentation) > 20, fam.name


def test_doc_lists_the_containerd_stores_families_as_exported(cstore_exporter):
    """On the containerd image store: every family served is documented, and the families the
    doc lists for that store alone are served, with their types and labels."""
    everything, own, live = documented(None), documented(True), exported(cstore_exporter.scrape_text())
    assert own, "no families under the containerd store's own heading"
    assert sorted(set(live) - set(everything)) == [], "exported but not in docs/metrics.md"
    assert sorted(set(own) - set(live)) == [], "documented for the containerd store but not exported"
    for name, (kind, labels) in live.items():
        assert everything[name] == (kind, labels), name


def test_doc_lists_docker_desktops_families_as_exported(desktop_exporter):
    """With a Docker Desktop disk image on the host: every family served is documented, and
    those the doc lists under Desktop's heading are all served, with their types and labels."""
    everything, own, live = (
        documented(None),
        documented(only=DESKTOP_ONLY),
        exported(desktop_exporter.scrape_text()),
    )
    assert len(own) >= 5, "no families under Docker Desktop's heading"
    assert sorted(set(live) - set(everything)) == [], "exported but not in docs/metrics.md"
    assert sorted(set(own) - set(live)) == [], "documented for Docker Desktop but not exported"
    for name, (kind, labels) in live.items():
        assert everything[name] == (kind, labels), name


def test_doc_lists_the_registry_samplers_families_as_exported(registry_exporter):
    """With --registry.root: every family served is documented, and every family the doc lists
    under the registry sampler is served, with its type and labels (one root: no root label)."""
    everything, own = documented(None), documented(only=REGISTRY_ONLY)
    live = exported(registry_exporter.scrape_text())
    assert len(own) >= 15, "no families under the registry sampler's heading"
    assert sorted(set(live) - set(everything)) == [], "exported but not in docs/metrics.md"
    assert sorted(set(own) - set(live)) == [], "documented for the registry sampler but not exported"
    for name in own:
        assert everything[name] == live[name], name
