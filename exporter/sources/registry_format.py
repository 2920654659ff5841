"""A Distribution registry's filesystem storage as the registry writes it: the layout, what a
manifest references, which names are repositories, and the typed records its reader
(exporter.sources.registry) hands out.

The filesystem driver's layout (distribution registry/storage/paths.go), under the driver's
`rootdirectory` + `docker/registry/v2/`:

    blobs/<algo>/<2 hex>/<hex>/data                    every blob: layers, configs, manifests
    repositories/<name…>/_manifests/revisions/<algo>/<hex>/link
                         _manifests/tags/<tag>/current/link
                         _layers/<algo>/<hex>/link
                         _uploads/<id>/{data,startedat}

A repository is a dir holding `_manifests` (Distribution 3.x's catalog) or `_layers` (2.x's);
names nest (`lib` and `lib/base`); other dirs starting with `_` are skipped, as the registry
skips them.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime

V2 = os.path.join("docker", "registry", "v2")
# read error kinds (registry_store_read_errors{kind})
ROOT, LISTING, LINK, MANIFEST, BLOB, UPLOAD, NAME = (
    "root", "listing", "link", "manifest", "blob", "upload", "repository_name",
)  # fmt: skip
ERROR_KINDS = (ROOT, LISTING, LINK, MANIFEST, BLOB, UPLOAD, NAME)

_ALGO = re.compile(r"[a-z0-9]+(?:[+._-][a-z0-9]+)*")
_HEX = re.compile(r"[a-f0-9]{32,}")
_DIGEST = re.compile(r"([a-z0-9]+(?:[+._-][a-z0-9]+)*):([a-f0-9]{32,})")
# distribution/reference: path components joined by "/", at most 255 characters
_COMPONENT = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*")

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
SCHEMA1 = (
    "application/vnd.docker.distribution.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
)


class NotARegistry(Exception):
    """The root holds no registry storage; str() says what was found and what to pass."""

    explained = True  # the sampler shows str() as it is


@dataclass(frozen=True, slots=True)
class BlobFile:
    size: int  # st_size of `data`
    mtime: float  # of `data`: when the blob was stored (the "young" window)


@dataclass(frozen=True, slots=True)
class Manifest:
    kind: str  # "image" (config + layers), "index" (child manifests) or "schema1"
    references: tuple[str, ...]  # what Distribution's References() returns, in order


@dataclass(frozen=True, slots=True)
class Upload:
    repository: str
    id: str
    started: float  # unix seconds from `startedat`; the dir's mtime when that is unreadable
    bytes: int  # st_size of its `data`


@dataclass(frozen=True)
class Repository:
    name: str  # the path under repositories/; odd bytes kept (surrogate escapes)
    revisions: tuple[str, ...]  # digests of its revision links, in the registry's walk order
    tags: tuple[tuple[str, str], ...]  # (tag, digest its current link names)
    layers: tuple[str, ...]  # digests of its _layers links


@dataclass(frozen=True)
class RegistryTree:
    path: str  # the v2 dir
    blobs: Mapping[str, BlobFile]  # digest -> its data file
    repositories: tuple[Repository, ...]  # in the registry's walk order
    manifests: Mapping[str, Manifest]  # the parsed revisions (a bad one is absent)
    uploads: tuple[Upload, ...]
    errors: Mapping[str, int]  # kind -> items that could not be read this pass
    unchanged: bool = False  # the same blobs and repositories as this reader's last pass
    manifests_read: int = 0  # manifest blobs opened this pass (the cache took the rest)
    links_read: int = 0  # link files opened this pass


def v2_dir(root: str) -> str:
    """The dir holding blobs/ and repositories/: `root`/docker/registry/v2, or `root` itself
    when it is that dir. Raises NotARegistry, saying why."""
    try:
        os.listdir(root)
    except OSError as exc:
        raise NotARegistry(
            f"{root} cannot be listed ({exc.strerror or exc}): is the registry's volume mounted?"
        ) from exc
    nested = os.path.join(root, V2)
    if os.path.isdir(nested):
        return nested
    if os.path.normpath(root).endswith(V2) or any(
        os.path.isdir(os.path.join(root, d)) for d in ("blobs", "repositories")
    ):
        return root
    if not os.listdir(root):
        return nested  # a registry that has stored nothing yet: it makes docker/ at the first push
    raise NotARegistry(
        f"{root} holds no {V2}: give --registry.root the dir the registry's "
        "storage.filesystem.rootdirectory names (e.g. /var/lib/registry)"
    )


def parse_manifest(data: bytes) -> Manifest | None:
    """References as Distribution's manifest handlers read them; None for what it rejects."""
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(doc, dict):
        return None
    version, media = doc.get("schemaVersion"), doc.get("mediaType") or ""
    if version == 1:
        layers = doc.get("fsLayers")
        if not isinstance(layers, list):
            return None
        return Manifest("schema1", _digests(x.get("blobSum") for x in layers if isinstance(x, dict)))
    if version != 2:
        return None
    if media in (DOCKER_LIST, OCI_INDEX) or (not media and isinstance(doc.get("manifests"), list)):
        children = doc.get("manifests")
        if not isinstance(children, list):
            return None
        return Manifest("index", _digests(_descriptor_digest(c) for c in children))
    if media in (DOCKER_MANIFEST, OCI_MANIFEST, ""):
        layers = doc.get("layers")
        if not isinstance(layers, list):
            layers = []
        config = doc.get("config")
        return Manifest("image", _digests(_descriptor_digest(d) for d in [config, *layers]))
    return None  # a media type the registry does not know: it refuses it too


def _descriptor_digest(d: object) -> object:
    return d.get("digest") if isinstance(d, dict) else None


def _digests(values: Iterator[object]) -> tuple[str, ...]:
    return tuple(v for v in values if isinstance(v, str) and _DIGEST.fullmatch(v))


def valid_repository_name(name: str) -> bool:
    return len(name) <= 255 and all(_COMPONENT.fullmatch(c) for c in name.split("/"))


def _rfc3339(raw: bytes | None) -> float | None:
    if not raw:
        return None
    try:
        return datetime.fromisoformat(raw.decode("ascii").strip()).timestamp()
    except (ValueError, UnicodeDecodeError):
        return None
