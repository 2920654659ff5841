"""What a rescan may reuse: walk results of dirs that cannot have changed since.

One cache, one expiry rule (`sweep`): an entry that a scan neither read nor wrote is gone
when that scan ends. A dir that is gone, or was changed (its stamp moved), or is no longer
reusable is not asked for, so it is dropped, and a host's churn never grows the cache.
"""

from __future__ import annotations

from exporter.model import Usage
from exporter.sources.stamps import Stamp
from exporter.stores.inventory import Key, Part

_Entry = tuple[Stamp | None, Usage]


class UsageCache:
    """Results by key, each valid while its dir's stamp is the one it was stored with (None:
    for good, e.g. an image layer's dir, immutable once committed). Owned by one sampler."""

    def __init__(self) -> None:
        self._entries: dict[Key, _Entry] = {}
        self._used: dict[Key, _Entry] = {}  # read or written by the scan under way
        self._groups: dict[Key, UsageCache] = {}
        self._used_groups: dict[Key, UsageCache] = {}
        self._counts: dict[Part, int] | None = None  # count() of _entries, until the next sweep

    def get(self, key: Key, stamp: Stamp | None = None) -> Usage | None:
        hit = self._entries.get(key)
        if hit is None or hit[0] != stamp:
            return None
        self._used[key] = hit
        return hit[1]

    @staticmethod
    def keeps(usage: Usage) -> bool:
        """Only a complete, clean walk of a dir that exists is worth keeping."""
        return not (usage.partial or usage.errors or usage.files == 0)

    def put(self, key: Key, usage: Usage, stamp: Stamp | None = None) -> None:
        if self.keeps(usage):
            self._used[key] = (stamp, usage)

    def group(self, key: Key) -> UsageCache:
        """The cache of a group's members (exporter.stores.inventory.MetaDir.members), kept as
        one while the group is asked for: a scan that takes the group's figure whole does not
        touch its tens of thousands of members, and they are still there when it changes. A
        scan that asks for the members sweeps this cache itself."""
        sub = self._groups.get(key)
        if sub is None:
            sub = UsageCache()
        self._used_groups[key] = sub
        return sub

    def sweep(self) -> None:
        """The scan is over: keep what it read or wrote, forget the rest."""
        self._counts = None
        self._entries, self._used = self._used, {}
        self._groups, self._used_groups = self._used_groups, {}

    def count(self, part: Part) -> int:
        """Entries of one part, its groups' included: counted again only after a change (a
        rescan that reuses a group whole does not count its members one by one)."""
        if self._counts is None:
            counts: dict[Part, int] = {}
            for key in self._entries:
                counts[key.part] = counts.get(key.part, 0) + 1
            self._counts = counts
        return self._counts.get(part, 0) + sum(sub.count(part) for sub in self._groups.values())

    def __len__(self) -> int:
        """Entries, a group's members included."""
        return len(self._entries) + sum(len(sub) for sub in self._groups.values())
