"""A real Distribution registry (Debian's docker-registry 2.8 on 127.0.0.1) filled by the test
engine: images pushed, a tag re-pushed, blobs shared across repositories (the engine mounts
them cross-repo), a manifest deleted by digest, a multi-platform manifest list PUT over HTTP
whose platform manifests are untagged, an unfinished upload (POST + PATCH, never PUT) and a
blob uploaded without a manifest. Then the registry is stopped, and its own
`garbage-collect --dry-run [-m]` says what it would delete: the oracle.

It is the test, not the exporter, that talks to the registry; the exporter reads the files.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from tests.harness.engine import PrivateEngine
from tests.harness.registry import BINARY, LocalRegistry
from tests.harness.registry_tree import tree_listing
from tests.harness.seed import busybox_tar

MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
UPLOAD_BYTES = 30_000
AGE = 2 * 3600  # every blob but the loose one made older than the young window


@dataclass
class RegistryState:
    base: Path  # the LocalRegistry dir: config.yml, data/
    root: Path  # --registry.root: the filesystem driver's rootdirectory
    repos: dict[str, set[str]] = field(default_factory=dict)  # repo -> blobs its manifests reference
    tags: dict[str, int] = field(default_factory=dict)  # repo -> tags
    manifests: dict[str, tuple[int, int]] = field(default_factory=dict)  # repo -> (tagged, untagged)
    child_only: set[str] = field(default_factory=set)  # configs and layers of untagged index children
    untagged_only: set[str] = field(default_factory=set)  # the re-pushed tag's old manifest and blobs
    loose: str = ""  # a blob uploaded with no manifest: young
    upload_started: tuple[float, float] = (0.0, 0.0)  # the unfinished upload began in this window
    gc_default: set[str] = field(default_factory=set)  # `garbage-collect --dry-run`
    gc_untagged: set[str] = field(default_factory=set)  # `garbage-collect --dry-run -m`
    listing: dict[str, tuple[int, int, int]] = field(default_factory=dict)  # the tree before any scan

    def blob_file(self, digest: str) -> Path:
        hexname = digest.split(":")[1]
        return self.root / "docker/registry/v2/blobs/sha256" / hexname[:2] / hexname / "data"

    def size(self, digests: set[str]) -> int:
        return sum(self.blob_file(d).stat().st_size for d in digests)

    def all_blobs(self) -> dict[str, int]:
        top = self.root / "docker/registry/v2/blobs"
        return {
            "sha256:" + Path(dp).name: os.lstat(os.path.join(dp, "data")).st_size
            for dp, _, files in os.walk(top)
            if "data" in files
        }


class _Api:
    def __init__(self, host: str) -> None:
        self.base = f"http://{host}/v2/"

    def call(self, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None):
        url = path if path.startswith("http") else self.base + path
        req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, dict(r.headers), r.read()

    def manifest(self, repo: str, ref: str) -> tuple[str, bytes]:
        _, h, body = self.call("GET", f"{repo}/manifests/{ref}", headers={"Accept": f"{MANIFEST}, {LIST}"})
        return h["Docker-Content-Digest"], body


def _references(body: bytes) -> list[str]:
    doc = json.loads(body)
    if "manifests" in doc:
        return [m["digest"] for m in doc["manifests"]]
    return [doc["config"]["digest"], *[x["digest"] for x in doc["layers"]]]


def gc_dry_run(config: Path, untagged: bool) -> set[str]:
    args = [BINARY, "garbage-collect", "--dry-run", *(["-m"] if untagged else []), str(config)]
    out = subprocess.run(args, capture_output=True, text=True, timeout=120, check=True).stdout
    return set(re.findall(r"blob eligible for deletion: (sha256:[0-9a-f]{64})", out))


def _image_ids(engine: PrivateEngine) -> set[str]:
    out = engine.docker("images", "-a", "-q", "--no-trunc")
    return set(out.split())


def seed_registry(engine: PrivateEngine, base: Path) -> RegistryState:
    d = engine.docker
    tag = f"dse-rs{os.getpid()}"  # unique local names, removed again at the end
    before = _image_ids(engine)
    with LocalRegistry(base) as registry:
        host, api = registry.host, _Api(registry.host)
        state = RegistryState(base=base, root=base / "data")
        local: list[str] = []

        def image(name: str, payload: int) -> str:
            ref = f"{tag}/{name}:x"
            d("import", "-", ref, input=busybox_tar({"payload": os.urandom(payload)}))
            local.append(ref)
            return ref

        def push(src: str, dest: str) -> str:
            d("tag", src, f"{host}/{dest}")
            local.append(f"{host}/{dest}")
            d("push", f"{host}/{dest}")
            repo, ref = dest.rsplit(":", 1)
            return api.manifest(repo, ref)[0]

        followed: set[str] = set()  # index children: held() follows them

        def held(repo: str, digests: list[str]) -> None:
            """The blobs the repo's manifests reference, from the manifests the API serves."""
            out = state.repos.setdefault(repo, set())
            todo = list(digests)
            while todo:
                m = todo.pop()
                out.add(m)
                for ref in _references(api.manifest(repo, m)[1]):
                    out.add(ref)
                    if ref in followed:
                        todo.append(ref)

        a, b, g = image("a", 40_000), image("b", 50_000), image("g", 35_000)
        # acme/app:v1 pushed twice: G's manifest stays as an untagged revision (what -m
        # deletes, with G's config and layer); A is there too, shared with two more repos.
        g_digest = push(g, "acme/app:v1")
        d("tag", b, f"{host}/acme/app:v1")
        b_digest = push(b, "acme/app:v1")
        a_digest = push(a, "acme/app:base")
        state.untagged_only = {g_digest, *_references(api.manifest("acme/app", g_digest)[1])}
        # The same image in another repository (layer and config mounted across), and an
        # image built on A's layer in a third.
        push(a, "team/base:1")
        with_run = f"{tag}/f:x"
        build_dir = base / "build"
        build_dir.mkdir()
        (build_dir / "Dockerfile").write_text(f"FROM {a}\nRUN head -c 20000 /dev/urandom > /f\n")
        d("build", "-q", "-t", with_run, str(build_dir))
        local.append(with_run)
        f_digest = push(with_run, "team/app:2")
        # Pushed, then deleted by digest: its blobs stay, nothing references them.
        e_digest = push(image("e", 25_000), "gone/app:1")
        api.call("DELETE", f"gone/app/manifests/{e_digest}")
        # Two platform manifests under a tag that the manifest list then takes: both untagged.
        c_digest = push(image("c", 15_000), "multi/arch:tmp")
        dd_digest = push(image("d", 16_000), "multi/arch:tmp")
        children = []
        for digest in (c_digest, dd_digest):
            _, body = api.manifest("multi/arch", digest)
            platform = {"architecture": f"arch-{digest[7:11]}", "os": "linux"}
            children.append({"mediaType": MANIFEST, "size": len(body), "digest": digest})
            children[-1]["platform"] = platform
            state.child_only |= set(_references(body))
        listing = json.dumps({"schemaVersion": 2, "mediaType": LIST, "manifests": children}).encode()
        for t in ("tmp", "latest"):
            api.call("PUT", f"multi/arch/manifests/{t}", listing, {"Content-Type": LIST})
        list_digest = "sha256:" + hashlib.sha256(listing).hexdigest()
        followed |= {c_digest, dd_digest}
        # A blob uploaded whole with no manifest (a push in flight).
        loose = os.urandom(7_000)
        state.loose = "sha256:" + hashlib.sha256(loose).hexdigest()
        _, h, _ = api.call("POST", "acme/app/blobs/uploads/", b"")
        sep = "&" if "?" in h["Location"] else "?"
        api.call("PUT", f"{_absolute(host, h['Location'])}{sep}digest={state.loose}", loose,
                 {"Content-Type": "application/octet-stream"})  # fmt: skip
        # An unfinished upload: started and PATCHed, never completed.
        t0 = time.time()
        _, h, _ = api.call("POST", "team/app/blobs/uploads/", b"")
        api.call("PATCH", _absolute(host, h["Location"]), os.urandom(UPLOAD_BYTES),
                 {"Content-Type": "application/octet-stream"})  # fmt: skip
        state.upload_started = (t0 - 2, time.time() + 2)  # startedat has whole seconds

        held("acme/app", [a_digest, b_digest, g_digest])
        held("team/base", [a_digest])
        held("team/app", [f_digest])
        state.repos["gone/app"] = set()
        held("multi/arch", [c_digest, dd_digest, list_digest])
        state.tags = {"acme/app": 2, "team/base": 1, "team/app": 1, "gone/app": 0, "multi/arch": 2}
        state.manifests = {"acme/app": (2, 1), "team/base": (1, 0), "team/app": (1, 0),
                           "gone/app": (0, 0), "multi/arch": (1, 2)}  # fmt: skip
    for ref in reversed(local):
        d("rmi", ref, check=False)
    # And whatever else the pushes and the build left in the shared engine (a tag moved off an
    # image leaves it dangling): the engine's tests see the state the seed made, not ours.
    for image_id in _image_ids(engine) - before:
        d("rmi", "-f", image_id, check=False)
    left = _image_ids(engine) - before
    if left:
        raise RuntimeError(f"registry seed: images left in the shared engine: {sorted(left)}")
    # Age every blob past the young window but the loose one (the test's change, not ours).
    for digest in state.all_blobs():
        if digest != state.loose:
            p = state.blob_file(digest)
            st = p.stat()
            os.utime(p, (st.st_atime - AGE, st.st_mtime - AGE))
    config = base / "config.yml"
    state.gc_default = gc_dry_run(config, untagged=False)
    state.gc_untagged = gc_dry_run(config, untagged=True)
    state.listing = tree_listing(state.root)
    return state


def _absolute(host: str, location: str) -> str:
    return location if location.startswith("http") else f"http://{host}{location}"
