"""The desktop sampler: Docker Desktop's VM disk image on this host, by stat (never opened)."""

from __future__ import annotations

from typing import Any

import structlog

from exporter.model import DesktopDiskImage, DesktopSnapshot
from exporter.samplers.base import NotDue, Sampler, Store
from exporter.sources import desktop
from exporter.sources.desktop import Allocated, Candidate, DiskImageError, Problem, Where

log = structlog.get_logger("exporter.samplers")


class DesktopSampler(Sampler):
    """Finds the disk image (Desktop's settings, then its default places) or stats the one
    `--desktop.disk-image` names. A host without Desktop has no status and no snapshot, so
    nothing about Desktop shows anywhere; once one was found the sampler stays visible.

    Paths that cannot be read and images gone since the last run are logged once and counted
    in the snapshot's `skipped`. A named image that cannot be stat'ed fails the run (the last
    good figures stay, as for every sampler)."""

    name = "desktop"

    def __init__(
        self,
        store: Store,
        disk_image: str = "",
        where: Where | None = None,
        allocated: Allocated = desktop.allocated_bytes,
        **kw: Any,
    ) -> None:
        super().__init__(store, publish=bool(disk_image), **kw)
        self.disk_image = disk_image
        self.where = where or desktop.this_host()
        self.allocated = allocated
        self._seen = bool(disk_image)  # shown once: from then on it reports, even "none left"
        self._last: set[str] = set()  # paths found by the last run
        self._logged: set[str] = set()  # problems already logged, until they clear

    def sample(self) -> DesktopSnapshot:
        named = bool(self.disk_image)
        if named:
            candidates, problems = desktop.given(self.disk_image, self.where.system), []
        else:
            candidates, problems = desktop.discover(self.where)
        images, more = self._measure(candidates, named)
        problems += more
        found = {i.path for i in images}
        problems += [Problem(p, "gone since the last sample") for p in sorted(self._last - found)]
        self._last = found
        self._log(problems)
        if named and not images:
            raise DiskImageError(f"--desktop.disk-image {self.disk_image}: no Desktop disk image there")
        if not images and not problems and not self._seen:
            raise NotDue()  # no Desktop here (yet): nothing to say
        self._seen = True
        images.sort(key=lambda i: (-(i.allocated_bytes or 0), i.path))
        return DesktopSnapshot(tuple(images), skipped=len(problems))

    def _measure(
        self, candidates: list[Candidate], named: bool
    ) -> tuple[list[DesktopDiskImage], list[Problem]]:
        images: list[DesktopDiskImage] = []
        problems: list[Problem] = []
        inodes: set[tuple[int, int]] = set()  # a moved-to place may be the default one
        one = named and len(candidates) == 1  # the file the operator named: it must be there
        for c in candidates:
            try:
                image, st, issues = desktop.measure(c, self.allocated)
            except OSError as exc:
                if one:
                    raise DiskImageError(f"--desktop.disk-image {c.path}: {exc.strerror or exc}") from None
                if not desktop.absent(exc):  # absent: a place this Desktop does not use
                    problems.append(Problem(c.path, exc.strerror or str(exc)))
                continue
            if (st.st_dev, st.st_ino) in inodes:
                continue
            inodes.add((st.st_dev, st.st_ino))
            images.append(image)
            problems += issues
        return images, problems

    def _log(self, problems: list[Problem]) -> None:
        now = {str(p) for p in problems}
        for p in problems:
            if str(p) not in self._logged:
                log.warning("desktop disk image not measured", path=p.path, reason=p.reason)
        self._logged = now

    def summary(self, snapshot: DesktopSnapshot) -> dict[str, Any]:
        return {
            "images": [i.path for i in snapshot.images],
            "apparent_bytes": [i.apparent_bytes for i in snapshot.images],
            "allocated_bytes": [i.allocated_bytes for i in snapshot.images],
            "skipped": snapshot.skipped,
        }
