"""A Distribution registry's filesystem storage, read read-only into the records of
exporter.sources.registry_format (the layout is described there).

Blobs are content-addressed and never rewritten, so a blob's size and a manifest's parsed
references are kept by digest, and a revision or layer link (written once, named by its
digest) by its path: a steady rescan lists dirs and reads tag links only.

Nothing is written, locked or renamed; files are opened O_RDONLY|O_NOFOLLOW|O_NONBLOCK (and
O_NOATIME where allowed), only small ones (links, `startedat`, manifests up to 4 MiB), never
a layer's data. What cannot be read is counted by kind in `RegistryTree.errors` and the rest
is still read.
"""

from __future__ import annotations

import errno
import os
import stat
import time
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

import structlog

from exporter.sources.rawfs import entry_is_dir
from exporter.sources.registry_format import (
    _ALGO,
    _DIGEST,
    _HEX,
    BLOB,
    LINK,
    LISTING,
    MANIFEST,
    NAME,
    UPLOAD,
    BlobFile,
    Manifest,
    RegistryTree,
    Repository,
    Upload,
    _rfc3339,
    parse_manifest,
    v2_dir,
    valid_repository_name,
)

log = structlog.get_logger("exporter.sources.registry")

MAX_MANIFEST = 4 * 1024 * 1024  # registry/handlers/manifests.go maxManifestBodySize
MAX_LINK = 256  # a link is "sha256:<64 hex>", 71 bytes
MAX_DEPTH = 32  # repository names nest; a deeper tree is not one the registry wrote
LOGGED_LIMIT = 1000  # bad paths logged once each, up to this many per reader


_OPEN = os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK
_NOATIME = getattr(os, "O_NOATIME", 0)


def _read(path: str, limit: int) -> bytes | None:
    """A regular file of at most `limit` bytes, read without following links, waiting on a
    fifo or touching its atime; None if it is missing, not regular, bigger, or unreadable."""
    try:
        try:
            fd = os.open(path, _OPEN | _NOATIME)
        except PermissionError:
            fd = os.open(path, _OPEN)  # O_NOATIME needs the file's owner (or CAP_FOWNER)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_size > limit:
            return None
        chunks, left = [], limit + 1
        while left > 0:  # bounded: at most limit + 1 bytes
            chunk = os.read(fd, min(left, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
        data = b"".join(chunks)
        return data if len(data) <= limit else None
    except OSError:
        return None
    finally:
        os.close(fd)


LinkDir = dict[str, str]  # a revision or _layers <algo> dir's valid links: hex name -> digest
Stamp = tuple[int, int, int]  # a file's (inode, mtime in ns, size)
SETTLE_NS = 2_000_000_000  # a stamp this old has seen its last change within the mtime tick


def _settled(st: os.stat_result, now_ns: int) -> Stamp | None:
    return (st.st_ino, st.st_mtime_ns, st.st_size) if now_ns - st.st_mtime_ns >= SETTLE_NS else None


@dataclass
class _Pass:
    """One read of the tree: what it counted."""

    errors: Counter[str] = field(default_factory=Counter)
    manifests_read: int = 0
    links_read: int = 0


class RegistryReader:
    """Reads one registry root again and again, keeping what cannot change: blob sizes and
    parsed manifests by digest, revision and layer link dirs by their listing. An entry the
    last pass did not see is dropped, so the caches hold what the tree holds."""

    def __init__(self, root: str) -> None:
        self.root = root
        self._blobs: dict[str, BlobFile] = {}
        self._manifests: dict[str, Manifest | None] = {}  # None: read and rejected (immutable)
        self._linkdirs: dict[str, LinkDir] = {}  # link contents never change: only whether they are there
        self._tags: dict[str, tuple[Stamp, str]] = {}  # a tag's current link (rewritten in place)
        self._prefixes: dict[str, tuple[Stamp, dict[str, BlobFile]]] = {}  # blobs/<algo>/<xx> dirs
        self._repos: tuple[Repository, ...] = ()
        self._logged: set[str] = set()

    # -- helpers ------------------------------------------------------------------------------

    def _bad(self, p: _Pass, kind: str, path: str, why: str) -> None:
        p.errors[kind] += 1
        if path not in self._logged and len(self._logged) < LOGGED_LIMIT:
            self._logged.add(path)
            log.warning("registry entry skipped", root=self.root, kind=kind, path=path, reason=why)

    def _entries(self, p: _Pass, path: str) -> list[os.DirEntry[str]]:
        """A dir's entries in the registry's walk order (sorted); a missing dir has none."""
        try:
            with os.scandir(path) as it:
                return sorted(it, key=lambda e: e.name)
        except OSError as exc:
            self._unlistable(p, path, exc)
            return []

    def _names(self, p: _Pass, path: str) -> list[str]:
        """A dir's names, sorted, without a DirEntry each (blobs/ has one per blob)."""
        try:
            return sorted(os.listdir(path))
        except OSError as exc:
            self._unlistable(p, path, exc)
            return []

    def _unlistable(self, p: _Pass, path: str, exc: OSError) -> None:
        if not isinstance(exc, FileNotFoundError):  # a dir that is not there has nothing in it
            self._bad(p, LISTING, path, exc.strerror or str(exc))

    def _dirs(self, p: _Pass, path: str) -> list[str]:
        return [e.name for e in self._entries(p, path) if entry_is_dir(e)]

    def _link(self, p: _Pass, path: str) -> str | None:
        """The digest a link file names; None when there is none, counted when it is garbage."""
        p.links_read += 1
        data = _read(path, MAX_LINK)
        if data is None and not os.path.lexists(path):
            return None  # what a delete leaves: the registry removes the link, not its dir
        text = data.decode("ascii", "replace").strip() if data is not None else ""
        if not _DIGEST.fullmatch(text):
            self._bad(p, LINK, path, "unreadable" if data is None else "not a digest")
            return None
        return text

    def _link_dir(self, p: _Pass, top: str, seen: dict[str, LinkDir]) -> list[str]:
        """The digests of `top`/<algo>/<hex>/link (revisions, _layers), each link named by its
        digest. A link's content never changes, so a link read before is only lstat'ed: a
        delete removes the link and leaves its dir, a re-push writes it again."""
        out: list[str] = []
        for algo in self._names(p, top):
            adir = os.path.join(top, algo)
            was = self._linkdirs.get(adir, {})
            now: LinkDir = {}
            prefix = adir + os.sep
            for hexname in self._names(p, adir):
                link = prefix + hexname + "/link"  # concatenation: join costs a third of this loop
                digest = was.get(hexname)
                if digest is not None:
                    try:
                        if stat.S_ISREG(os.lstat(link).st_mode):
                            now[hexname] = digest
                            out.append(digest)
                            continue
                    except OSError:
                        continue  # deleted: the registry removed the link, not its dir
                read = self._link(p, link)
                if read is not None and read != f"{algo}:{hexname}":
                    self._bad(p, LINK, link, f"names {read}, not the digest of its path")
                    read = None
                if read is not None:  # a missing or garbage one is looked at again next pass
                    now[hexname] = read
                    out.append(read)
            seen[adir] = now
        return out

    def _tag(self, p: _Pass, link: str, now_ns: int, seen: dict[str, tuple[Stamp, str]]) -> str | None:
        """A tag's current digest. The registry rewrites the link in place when the tag moves,
        so it is read again unless its (inode, mtime, size) is the last pass's and settled."""
        try:
            stamp = _settled(os.lstat(link), now_ns)
        except OSError:
            stamp = None
        known = self._tags.get(link)
        if stamp is not None and known is not None and known[0] == stamp:
            seen[link] = known
            return known[1]
        digest = self._link(p, link)
        if digest is not None and stamp is not None:
            seen[link] = (stamp, digest)
        return digest

    # -- the pass -----------------------------------------------------------------------------

    def read(self) -> RegistryTree:
        """One pass over the tree. Raises NotARegistry only for the root itself."""
        v2 = v2_dir(self.root)
        p = _Pass()
        previous = self._blobs
        blobs = self._read_blobs(p, os.path.join(v2, "blobs"))
        linkdirs: dict[str, LinkDir] = {}
        tags: dict[str, tuple[Stamp, str]] = {}
        uploads: list[Upload] = []
        walk = self._walk_repositories(p, os.path.join(v2, "repositories"), [], (linkdirs, tags), uploads)
        repos = tuple(walk)
        self._linkdirs, self._tags = linkdirs, tags
        manifests = self._read_manifests(p, v2, repos, blobs)
        unchanged = bool(previous) and previous.keys() == blobs.keys() and repos == self._repos
        self._repos = repos
        return RegistryTree(
            path=v2,
            blobs=blobs,
            repositories=repos,
            manifests=manifests,
            uploads=tuple(uploads),
            errors=dict(p.errors),
            unchanged=unchanged and not p.errors.get(MANIFEST),
            manifests_read=p.manifests_read,
            links_read=p.links_read,
        )

    def _read_blobs(self, p: _Pass, top: str) -> dict[str, BlobFile]:
        """Every blob's data file. A prefix dir (`<algo>/<xx>`) gains or loses an entry only
        when a blob is stored or deleted (its hex dir made or removed), which moves its
        (inode, mtime): while that stamp is the last pass's and settled, its blobs are too."""
        found: dict[str, BlobFile] = {}
        cache = self._blobs
        prefixes: dict[str, tuple[Stamp, dict[str, BlobFile]]] = {}
        now_ns = time.time_ns()
        for algo in self._names(p, top):
            if not _ALGO.fullmatch(algo):
                self._bad(p, BLOB, os.path.join(top, algo), "not a digest algorithm")
                continue
            adir = os.path.join(top, algo)
            for prefix in self._names(p, adir):
                pdir = os.path.join(adir, prefix)
                try:
                    stamp = _settled(os.lstat(pdir), now_ns)
                except OSError:
                    stamp = None
                known_dir = self._prefixes.get(pdir)
                if stamp is not None and known_dir is not None and known_dir[0] == stamp:
                    prefixes[pdir] = known_dir
                    found.update(known_dir[1])
                    continue
                errors_before = sum(p.errors.values())
                here: dict[str, BlobFile] = {}
                for name in self._names(p, pdir):
                    digest = algo + ":" + name
                    known = cache.get(digest)
                    if known is not None:  # immutable: the listing says it is still there
                        here[digest] = known
                        continue
                    path = os.path.join(pdir, name)
                    if not _HEX.fullmatch(name):
                        self._bad(p, BLOB, path, "not a digest")
                        continue
                    data = os.path.join(path, "data")
                    try:
                        st = os.lstat(data)
                    except OSError as exc:
                        why = "no data file" if exc.errno in (errno.ENOENT, errno.ENOTDIR) else exc.strerror
                        self._bad(p, BLOB, path, why or str(exc))
                        continue
                    if not stat.S_ISREG(st.st_mode):
                        self._bad(p, BLOB, data, "data is not a regular file")
                        continue
                    here[digest] = BlobFile(st.st_size, st.st_mtime)
                found.update(here)
                if stamp is not None and sum(p.errors.values()) == errors_before:
                    prefixes[pdir] = (stamp, here)  # a dir with a bad entry is looked at again
        self._prefixes = prefixes
        self._blobs = found
        return found

    def _walk_repositories(
        self,
        p: _Pass,
        path: str,
        name: list[str],
        seen: tuple[dict[str, LinkDir], dict[str, tuple[Stamp, str]]],
        uploads: list[Upload],
    ) -> Iterator[Repository]:
        entries = self._entries(p, path)
        names = {e.name for e in entries if entry_is_dir(e)}
        if name and ("_manifests" in names or "_layers" in names):
            repo = "/".join(name)
            yield self._read_repository(p, path, repo, seen)
            uploads.extend(self._read_uploads(p, path, repo))
        if len(name) >= MAX_DEPTH:
            if any(not n.startswith("_") for n in names):
                self._bad(p, LISTING, path, f"repository names nested deeper than {MAX_DEPTH}")
            return
        for entry in entries:
            if entry.name.startswith("_") or not entry_is_dir(entry):
                continue  # _manifests, _layers, _uploads... are a repository's, never one
            yield from self._walk_repositories(p, entry.path, [*name, entry.name], seen, uploads)

    def _read_repository(
        self, p: _Pass, path: str, name: str, seen: tuple[dict[str, LinkDir], dict[str, tuple[Stamp, str]]]
    ) -> Repository:
        if not valid_repository_name(name):
            # Kept and measured; Distribution's GC stops at such a name ("failed to parse repo name").
            self._bad(p, NAME, path, "not a valid repository name")
        linkdirs, tag_links = seen
        revisions = self._link_dir(p, os.path.join(path, "_manifests", "revisions"), linkdirs)
        tags = []
        tdir = os.path.join(path, "_manifests", "tags")
        now_ns = time.time_ns()
        for tag in self._names(p, tdir):
            digest = self._tag(p, os.path.join(tdir, tag, "current", "link"), now_ns, tag_links)
            if digest is not None:
                tags.append((tag, digest))
        layers = self._link_dir(p, os.path.join(path, "_layers"), linkdirs)
        return Repository(name, tuple(revisions), tuple(tags), tuple(layers))

    def _read_uploads(self, p: _Pass, path: str, repo: str) -> list[Upload]:
        out = []
        for entry in self._entries(p, os.path.join(path, "_uploads")):
            if not entry_is_dir(entry):
                continue
            try:
                size = os.lstat(os.path.join(entry.path, "data")).st_size
            except OSError:
                size = 0  # started, no byte sent yet
            raw = _read(os.path.join(entry.path, "startedat"), 64)
            started = _rfc3339(raw)
            if started is None:
                self._bad(p, UPLOAD, entry.path, "startedat missing or not RFC 3339")
                try:
                    started = entry.stat(follow_symlinks=False).st_mtime
                except OSError:
                    continue
            out.append(Upload(repo, entry.name, started, size))
        return out

    def _read_manifests(
        self, p: _Pass, v2: str, repos: tuple[Repository, ...], blobs: Mapping[str, BlobFile]
    ) -> dict[str, Manifest]:
        wanted = {d for r in repos for d in r.revisions if d in blobs}
        cache: dict[str, Manifest | None] = {}
        out: dict[str, Manifest] = {}
        for digest in sorted(wanted):
            if digest in self._manifests:
                m = self._manifests[digest]
            else:
                p.manifests_read += 1
                algo, hexname = digest.split(":", 1)
                data = _read(os.path.join(v2, "blobs", algo, hexname[:2], hexname, "data"), MAX_MANIFEST)
                m = parse_manifest(data) if data is not None else None
            cache[digest] = m
            if m is None:
                self._bad(p, MANIFEST, digest, "unreadable, over 4 MiB, not JSON or of an unknown schema")
            else:
                out[digest] = m
        self._manifests = cache
        return out
