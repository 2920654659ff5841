"""Label filters, PromQL helpers and query targets shared by the dashboards."""

from __future__ import annotations

DS = {"type": "prometheus", "uid": "${datasource}"}  # the `datasource` variable, never a fixed uid
TOP = 10
WINDOW = "6h"  # the regression window of the time-until-full prediction


class Selector:
    """Adds a dashboard's label filters to a metric name: `sel("docker_storage_images", 'state="x"')`."""

    def __init__(self, *matchers: str) -> None:
        self.matchers = matchers

    def __call__(self, name: str, *extra: str) -> str:
        return f"{name}{{{', '.join((*self.matchers, *extra))}}}"


HOST = Selector('job=~"$job"', 'instance=~"$instance"')
FLEET = Selector('job=~"$job"')


def free_ratio(sel: Selector) -> str:
    return f"{sel('docker_storage_filesystem_avail_bytes')} / {sel('docker_storage_filesystem_size_bytes')}"


def inodes_free_ratio(sel: Selector) -> str:
    return f"{sel('docker_storage_filesystem_files_free')} / ({sel('docker_storage_filesystem_files')} > 0)"


def registry_free_ratio(sel: Selector) -> str:
    return (
        f"{sel('docker_storage_registry_store_filesystem_avail_bytes')} / "
        f"{sel('docker_storage_registry_store_filesystem_size_bytes')}"
    )


def per_root(expr: str) -> str:
    """`expr` with a `root` label on every series: the registry families carry one only when the
    exporter reads more than one --registry.root; a single root is called `registry` in legends."""
    return f'label_replace({expr}, "root", "registry", "root", "")'


def seconds_until(sel: Selector, record: str) -> str:
    """A recorded hours-until figure in seconds; absent unless shrinking (see the rules)."""
    return f"{sel(record)} * 3600"


def orphaned(sel: Selector) -> str:
    """Allocated bytes of storage-driver dirs owned by no layer, container or snapshot (leaked)."""
    return sel("docker_storage_driver_disk_bytes", 'owner="orphan"')


def top(sel: Selector, name: str, label: str, k: int = TOP) -> str:
    """The k biggest items of a capped family, without its `__other__` fold."""
    items = sel(name, f'{label}!="__other__"')
    return f"topk({k}, {items})"


def along(expr: str, ranking: str, *on: str) -> str:
    """`expr` for the items that `ranking` kept (so a merged table stays the top k)."""
    return f"{expr} and on ({', '.join(on)}) {ranking}"


def target(
    expr: str, ref: str = "A", legend: str = "", *, table: bool = False, instant: bool = False
) -> dict:
    t = {
        "datasource": DS,
        "editorMode": "code",
        "expr": expr,
        "refId": ref,
        "legendFormat": legend or "__auto",
        "range": not (table or instant),
        "instant": table or instant,
    }
    if table:
        t["format"] = "table"
    return t


def targets(*specs: tuple[str, str] | str, table: bool = False, instant: bool = False) -> list[dict]:
    """Targets A, B, C… from expressions or (expression, legend) pairs."""
    out = []
    for i, spec in enumerate(specs):
        expr, legend = (spec, "") if isinstance(spec, str) else spec
        out.append(target(expr, chr(ord("A") + i), legend, table=table, instant=instant))
    return out
