"""Writes a Distribution registry's filesystem layout directly (registry/storage/paths.go), for
unit tests and the benchmark: blobs, manifests, revision/tag/layer links, uploads. What a
real registry writes is checked by the suite's real-registry test; this makes the odd and
broken trees a registry rarely leaves."""

from __future__ import annotations

import hashlib
import json
import os
from datetime import UTC, datetime
from pathlib import Path

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
CONFIG = "application/vnd.docker.container.image.v1+json"
LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def tree_listing(root: Path) -> dict[str, tuple[int, int, int]]:
    """Every entry under root: (size, mtime_ns, mode), links not followed."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            out[p] = (st.st_size if not os.path.isdir(p) else 0, st.st_mtime_ns, st.st_mode)
    return out


class TreeBuilder:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.v2 = root / "docker" / "registry" / "v2"
        self.sizes: dict[str, int] = {}  # digest -> bytes of every blob written

    # -- raw pieces -------------------------------------------------------------------------

    def blob(self, data: bytes, mtime: float | None = None) -> str:
        digest = digest_of(data)
        hexname = digest.split(":")[1]
        d = self.v2 / "blobs" / "sha256" / hexname[:2] / hexname
        d.mkdir(parents=True, exist_ok=True)
        if not (d / "data").exists():  # content-addressed: a second write is the same blob
            (d / "data").write_bytes(data)
        if mtime is not None:
            os.utime(d / "data", (mtime, mtime))
        self.sizes[digest] = len(data)
        return digest

    def repo(self, name: str | bytes) -> Path:
        path = os.fsencode(self.v2 / "repositories") + b"/" + os.fsencode(name)
        return Path(os.fsdecode(path))

    def link(self, path: Path, content: str | bytes) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content.encode() if isinstance(content, str) else content)

    def revision(self, repo: str | bytes, digest: str, content: str | bytes | None = None) -> None:
        hexname = digest.split(":")[1]
        self.link(
            self.repo(repo) / "_manifests" / "revisions" / "sha256" / hexname / "link", content or digest
        )

    def layer_link(self, repo: str | bytes, digest: str) -> None:
        hexname = digest.split(":")[1]
        self.link(self.repo(repo) / "_layers" / "sha256" / hexname / "link", digest)

    def tag(self, repo: str | bytes, tag: str, digest: str, content: str | bytes | None = None) -> None:
        tdir = self.repo(repo) / "_manifests" / "tags" / tag
        self.link(tdir / "current" / "link", content or digest)
        self.link(tdir / "index" / "sha256" / digest.split(":")[1] / "link", digest)

    # -- what a push leaves -----------------------------------------------------------------

    def image(
        self,
        repo: str | bytes,
        layers: list[bytes],
        config: bytes,
        tag: str | None = None,
        media: str = DOCKER_MANIFEST,
        mtime: float | None = None,
    ) -> str:
        """Layers and config as blobs, linked in the repo; the manifest as a revision."""
        cfg = self.blob(config, mtime)
        self.layer_link(repo, cfg)
        descs = []
        for data in layers:
            d = self.blob(data, mtime)
            self.layer_link(repo, d)
            descs.append({"mediaType": LAYER, "size": len(data), "digest": d})
        body = {
            "schemaVersion": 2,
            "mediaType": media,
            "config": {"mediaType": CONFIG, "size": len(config), "digest": cfg},
            "layers": descs,
        }
        return self.manifest(repo, json.dumps(body, indent=3).encode(), tag, mtime)

    def index(
        self,
        repo: str | bytes,
        children: list[str],
        tag: str | None = None,
        media: str = OCI_INDEX,
        mtime: float | None = None,
    ) -> str:
        descs = [
            {"mediaType": DOCKER_MANIFEST, "size": self.sizes.get(c, 0), "digest": c,
             "platform": {"architecture": f"arch{i}", "os": "linux"}}
            for i, c in enumerate(children)
        ]  # fmt: skip
        body = {"schemaVersion": 2, "mediaType": media, "manifests": descs}
        return self.manifest(repo, json.dumps(body).encode(), tag, mtime)

    def manifest(
        self, repo: str | bytes, body: bytes, tag: str | None = None, mtime: float | None = None
    ) -> str:
        digest = self.blob(body, mtime)
        self.revision(repo, digest)
        if tag is not None:
            self.tag(repo, tag, digest)
        return digest

    def upload(self, repo: str | bytes, uid: str, data: bytes, started: float | None) -> None:
        d = self.repo(repo) / "_uploads" / uid
        d.mkdir(parents=True, exist_ok=True)
        (d / "data").write_bytes(data)
        if started is not None:
            stamp = datetime.fromtimestamp(started, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            (d / "startedat").write_text(stamp)
