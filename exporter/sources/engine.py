"""Read-only adapter over the Docker Engine API (docker-py's low-level client).

Only GET requests leave this module. Every call has a timeout, is counted by endpoint (so
a test or an operator can see that the number of calls does not grow with the host), and
returns plain JSON; the pure `parse_*` functions below turn that JSON into model types and
tolerate the shapes of every API version from 1.41 on (fields absent, null, -1 or of the
wrong type). A field we cannot read becomes a default, never an exception.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from typing import Any

import docker
import docker.errors
import requests.exceptions

from exporter.model import CONTAINER_STATES, BuildCache, Container, EngineInfo, Volume
from exporter.sources.enginetls import EngineTLS, EngineTLSError, explain

MIN_API = "1.41"  # Docker 20.10, the oldest engine we promise to support
# dockerd before 23.0 runs one disk-usage operation at a time and refuses a second with this
# (moby daemon/disk_usage.go); another client's `docker system df`, or another exporter, may
# hold it. Asked again, backing off, for at most DF_BUSY_WAIT seconds.
DF_BUSY = "a disk usage operation is already running"
DF_BUSY_WAIT = 30.0
MAX_API = "1.52"  # the newest API whose response shapes we know

# Raised for anything that means "the engine did not give us an answer".
EngineError = (
    docker.errors.DockerException,
    requests.exceptions.RequestException,
    OSError,
    ValueError,
)


def api_tuple(version: str) -> tuple[int, ...]:
    """'1.41' -> (1, 41); anything unreadable sorts lowest."""
    try:
        return tuple(int(p) for p in str(version).split("."))
    except ValueError:
        return (0,)


class EngineClient:
    """GET-only access to one engine. One sampler uses it at a time; that sampler may have
    several requests in flight at once (requests' Session and urllib3's pool allow that)."""

    concurrent = True  # see exporter.samplers.engine._Listings

    def __init__(
        self,
        base_url: str,
        timeout: float = 10.0,
        tls: EngineTLS | None = None,
    ) -> None:
        # A fixed version here means no request at construction: the engine may be down
        # when the exporter starts. `negotiate()` picks the real one on first contact.
        self.tls = tls if not base_url.startswith("unix://") else None
        self._api = docker.APIClient(
            base_url=base_url,
            version=MIN_API,
            timeout=timeout,
            tls=self.tls.docker_config() if self.tls else False,
        )
        # The engine's CA goes with every request: requests lets REQUESTS_CA_BUNDLE and
        # CURL_CA_BUNDLE override the session's CA, never a CA given to the request itself.
        self._request_kw: dict[str, Any] = {"verify": self.tls.requests_verify} if self.tls else {}
        if base_url.startswith("unix://"):
            # No proxy, .netrc or CA bundle from the environment applies to a unix socket;
            # requests would look them up again on every request.
            self._api.trust_env = False
        self.base_url = base_url
        self.api_version = MIN_API
        self.negotiated = False
        self.requests: Counter[str] = Counter()
        self.df_busy = 0  # /system/df answers "already running" since made (df asks again)
        self._lock = threading.Lock()

    def request_counts(self) -> dict[str, int]:
        with self._lock:
            return dict(self.requests)

    def close(self) -> None:
        self._api.close()

    def _get(
        self,
        path: str,
        params: dict[str, Any] | None = None,
        versioned: bool = True,
        endpoint: str = "",
        raw: bool = False,
    ) -> Any:
        # Counted by endpoint template so the label set stays bounded.
        with self._lock:
            self.requests[endpoint or path] += 1
        url = self._api._url(path, versioned_api=versioned)
        try:
            response = self._api._get(url, params=params, **self._request_kw)
            if raw:
                return self._api._result(response, binary=True)
            return self._api._result(response, json=True)
        except EngineError as exc:
            why = explain(exc, self.tls, self.base_url)
            if why is None:
                raise
            raise EngineTLSError(why) from exc

    def negotiate(self) -> dict[str, Any]:
        """GET /version (unversioned) and use min(server API, MAX_API) from now on."""
        version = self._get("/version", versioned=False)
        server = str(version.get("ApiVersion") or MIN_API) if isinstance(version, dict) else MIN_API
        chosen = server if api_tuple(server) <= api_tuple(MAX_API) else MAX_API
        self._api._version = chosen
        self.api_version = chosen
        self.negotiated = True
        return version if isinstance(version, dict) else {}

    def at_least(self, version: str) -> bool:
        return api_tuple(self.api_version) >= api_tuple(version)

    def info(self) -> Any:
        return self._get("/info")

    def images(self) -> Any:
        """The listing's JSON body, undecoded: `imagesizes.parse_images` decodes it item by item
        (a host may list tens of thousands of images; no dict per image outlives its parse)."""
        return self._get("/images/json", {"all": "1"}, raw=True)

    def image_inspect(self, image_id: str) -> Any:
        return self._get(f"/images/{image_id}/json", endpoint="/images/{id}/json")

    def image_history(self, image_id: str) -> Any:
        return self._get(f"/images/{image_id}/history", endpoint="/images/{id}/history")

    def containers(self) -> Any:
        # Never size=1: that makes dockerd walk every container's writable layer.
        return self._get("/containers/json", {"all": "1"})

    def volumes(self) -> Any:
        return self._get("/volumes")

    def df(self, types: list[str] | None = None) -> Any:
        """/system/df; with `types` (API >= 1.42) dockerd computes only those objects."""
        params: dict[str, Any] = {}
        if types:
            params["type"] = types
            if self.at_least("1.52"):
                params["verbose"] = "1"  # 1.52 lists items only when asked
        deadline, pause = time.monotonic() + DF_BUSY_WAIT, 0.1
        while True:
            try:
                return self._get("/system/df", params)
            except docker.errors.APIError as exc:
                if DF_BUSY not in str(exc) or time.monotonic() + pause > deadline:
                    raise
                with self._lock:
                    self.df_busy += 1
            time.sleep(pause)
            pause = min(pause * 2, 2.0)


# ---------------------------------------------------------------------------------------
# Tolerant readers. Docker's JSON varies by version; these never raise.


INT64 = range(-(2**63), 2**63)  # Docker's sizes and times are int64


def as_int(value: Any, default: int = 0) -> int:
    if type(value) is int:  # the common case first
        return value if value in INT64 else default
    if isinstance(value, bool):
        return default
    if isinstance(value, int):
        return value if value in INT64 else default
    if isinstance(value, float) and value == value and abs(value) < 2**63:
        return int(value)
    if isinstance(value, str):
        try:
            n = int(value)
        except ValueError:
            return default
        return n if n in INT64 else default
    return default


def as_str(value: Any, default: str = "") -> str:
    return value if isinstance(value, str) else default


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def as_dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


CONTAINERD_SNAPSHOTTER = "io.containerd.snapshotter.v1"


def parse_engine_info(version: Any, info: Any) -> EngineInfo:
    version, info = as_dict(version), as_dict(info)
    components = [as_str(as_dict(c).get("Name")) for c in as_list(version.get("Components"))]
    platform = as_str(as_dict(version.get("Platform")).get("Name"))
    engine = "podman" if any("podman" in n.lower() for n in [platform, *components]) else "docker"
    image_store = "graphdriver"
    for pair in as_list(info.get("DriverStatus")):
        pair = as_list(pair)
        if len(pair) == 2 and as_str(pair[0]).lower() == "driver-type":
            if CONTAINERD_SNAPSHOTTER in as_str(pair[1]):
                image_store = "containerd"
    containerd = as_dict(info.get("Containerd"))  # API 1.46+
    return EngineInfo(
        engine=engine,
        version=as_str(version.get("Version")) or as_str(info.get("ServerVersion")),
        api_version=as_str(version.get("ApiVersion")),
        storage_driver=as_str(info.get("Driver")),
        image_store=image_store,
        root_dir=as_str(info.get("DockerRootDir")),
        containerd_address=as_str(containerd.get("Address")),
        containerd_namespace=as_str(as_dict(containerd.get("Namespaces")).get("Containers")),
    )


def real_tags(raw: Any) -> tuple[str, ...]:
    """RepoTags without the '<none>:<none>' placeholder that all=1 listings add."""
    if type(raw) is list and len(raw) == 1:  # the common case, on the hot path of big hosts
        t = raw[0]
        return (t,) if isinstance(t, str) and t and "<none>" not in t else ()
    return tuple(sorted({t for t in as_list(raw) if isinstance(t, str) and t and "<none>" not in t}))


def parse_containers(raw: Any) -> tuple[list[Container], int]:
    """Returns the containers and how many entries were unreadable and skipped."""
    out, skipped = [], 0
    for item in as_list(raw):
        item = as_dict(item)
        cid = as_str(item.get("Id"))
        if not cid:
            skipped += 1
            continue
        state = as_str(item.get("State")).lower()
        if state not in CONTAINER_STATES:
            state = _state_from_status(as_str(item.get("Status")))
        names = [as_str(n).lstrip("/") for n in as_list(item.get("Names")) if as_str(n)]
        volumes = tuple(
            sorted(
                {
                    as_str(m.get("Name"))
                    for m in map(as_dict, as_list(item.get("Mounts")))
                    if as_str(m.get("Type")) == "volume" and as_str(m.get("Name"))
                }
            )
        )
        out.append(
            Container(
                id=cid,
                name=names[0] if names else cid[:12],
                image_id=as_str(item.get("ImageID")),
                image=as_str(item.get("Image")),
                state=state,
                volumes=volumes,
            )
        )
    return out, skipped


def _state_from_status(status: str) -> str:
    # Engines before `State` existed only had the human Status ("Up 3 hours", "Exited (0)…").
    s = status.lower()
    if s.startswith("up"):
        return "paused" if "paused" in s else "running"
    if s.startswith("exited"):
        return "exited"
    if s.startswith("restarting"):
        return "restarting"
    if "removal" in s or s.startswith("removing"):
        return "removing"
    if s.startswith("dead"):
        return "dead"
    return "created"


def parse_volumes(raw: Any, users: Counter[str]) -> tuple[list[Volume], int]:
    out, skipped = [], 0
    for item in as_list(as_dict(raw).get("Volumes")):
        item = as_dict(item)
        name = as_str(item.get("Name"))
        if not name:
            skipped += 1
            continue
        out.append(
            Volume(
                name=name,
                driver=as_str(item.get("Driver")) or "local",
                mountpoint=as_str(item.get("Mountpoint")),
                containers=users.get(name, 0),
            )
        )
    return out, skipped


def parse_build_cache(df: Any) -> BuildCache:
    """Build cache totals with `docker system df`'s definitions, from either df shape.

    Legacy (< 1.52): a `BuildCache` list; SIZE counts records that are not shared and
    RECLAIMABLE is that minus the in-use ones, as the CLI computes it.
    1.52+: `BuildCacheUsage` carries the engine's own totals.
    """
    df = as_dict(df)
    usage = df.get("BuildCacheUsage")
    if isinstance(usage, dict):
        return BuildCache(
            records=max(0, as_int(usage.get("TotalCount"))),
            in_use=max(0, as_int(usage.get("ActiveCount"))),
            bytes=max(0, as_int(usage.get("TotalSize"))),
            reclaimable=max(0, as_int(usage.get("Reclaimable"))),
        )
    records = [as_dict(r) for r in as_list(df.get("BuildCache"))]
    size = sum(max(0, as_int(r.get("Size"))) for r in records if not r.get("Shared"))
    in_use_bytes = sum(
        max(0, as_int(r.get("Size"))) for r in records if r.get("InUse") and not r.get("Shared")
    )
    return BuildCache(
        records=len(records),
        in_use=sum(1 for r in records if r.get("InUse")),
        bytes=size,
        reclaimable=max(0, size - in_use_bytes),
    )
