"""What Distribution's `registry garbage-collect` would keep and delete, and what each
repository holds, computed from a read tree (exporter/sources/registry.py). No I/O.

Mark and sweep as registry/storage/garbagecollect.go (v3) does them:
- for every repository, in walk order, every revision whose blob exists is marked — with
  `-m` (delete_untagged) only those some tag's `current` names — and then what it references,
  recursively: an image manifest marks its config and layers, an index its child manifests,
  and a child that is a revision of the same repository is followed in turn. A reference
  already marked is not followed again (v3 does exactly this).
- sweep: every blob not marked is deleted.
Distribution 2.x marks an index's children but does not follow them (`recursive=False`):
with `-m` it also deletes the config and layers of untagged child manifests of a tagged index
(distribution#3004), which `index_child_only` measures.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from exporter.sources.registry_format import BlobFile, RegistryTree, Repository

DEFAULT, DELETE_UNTAGGED = "default", "delete_untagged"  # reclaimable_bytes{mode}


def tagged_digests(repo: Repository) -> set[str]:
    return {digest for _, digest in repo.tags}


def marked(tree: RegistryTree, delete_untagged: bool, recursive: bool = True) -> set[str]:
    """The digests GC marks (some may name no blob: marking them frees nothing)."""
    mark: set[str] = set()
    for repo in tree.repositories:
        revisions = {d for d in repo.revisions if d in tree.blobs}
        tagged = tagged_digests(repo)
        for digest in repo.revisions:
            if digest not in revisions or (delete_untagged and digest not in tagged):
                continue
            mark.add(digest)
            _mark_references(tree, digest, revisions, mark, recursive)
    return mark


def _mark_references(
    tree: RegistryTree, digest: str, revisions: set[str], mark: set[str], recursive: bool
) -> None:
    # Iterative (an index of indexes of ... stays bounded by the marked set), same order as v3.
    stack = [digest]
    while stack:
        manifest = tree.manifests.get(stack.pop())
        if manifest is None:
            continue  # unreadable: GC would stop here; its blob alone is marked (counted elsewhere)
        follow = []
        for ref in manifest.references:
            if ref in mark:
                continue
            mark.add(ref)
            if recursive and ref in revisions:
                follow.append(ref)
        stack.extend(reversed(follow))


def sweep(tree: RegistryTree, mark: set[str]) -> set[str]:
    """The blobs GC deletes."""
    return {d for d in tree.blobs if d not in mark}


def size_of(blobs: Mapping[str, BlobFile], digests: Iterable[str]) -> int:
    return sum(blobs[d].size for d in digests if d in blobs)


def repository_blobs(tree: RegistryTree, repo: Repository) -> set[str]:
    """The blobs the repository's manifests reference: every revision whose blob exists, with
    what it references as GC marks it (its own manifest blob included)."""
    mark: set[str] = set()
    revisions = {d for d in repo.revisions if d in tree.blobs}
    for digest in repo.revisions:
        if digest in revisions:
            mark.add(digest)
            _mark_references(tree, digest, revisions, mark, True)
    return {d for d in mark if d in tree.blobs}


@dataclass(frozen=True)
class Dangling:
    layer: int  # _layers links whose blob is missing
    revision: int  # revision links whose blob is missing (GC skips them)
    tag: int  # tags whose current link names a missing blob


def dangling(tree: RegistryTree) -> Dangling:
    blobs = tree.blobs
    layer = sum(1 for r in tree.repositories for d in r.layers if d not in blobs)
    revision = sum(1 for r in tree.repositories for d in r.revisions if d not in blobs)
    tag = sum(1 for r in tree.repositories for _, d in r.tags if d not in blobs)
    return Dangling(layer, revision, tag)
