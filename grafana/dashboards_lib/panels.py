"""Field config and the panel builders: every panel points at the `${datasource}` variable."""

from __future__ import annotations

from .queries import DS

# Alerting thresholds the colours follow (grafana/alerts, docs/alerts.md): below 15 % free is a
# warning, below 10 % critical; full within 24 h a warning, within 4 h critical.
FREE_STEPS = [("red", None), ("orange", 0.10), ("green", 0.15)]
TTF_STEPS = [("red", None), ("orange", 4 * 3600), ("green", 24 * 3600)]
UP_STEPS = [("red", None), ("green", 1)]
BAD_WHEN_POSITIVE = [("green", None), ("red", 1)]
MAP_UP = {"0": ("down", "red"), "1": ("up", "green")}
MAP_OK = {"0": ("failing", "red"), "1": ("ok", "green")}
MAP_YES = {"0": ("no", "orange"), "1": ("yes", "green")}
MAP_RO = {"0": ("read-write", "green"), "1": ("READ-ONLY", "red")}


def thresholds(steps: list[tuple[str, float | None]]) -> dict:
    return {"mode": "absolute", "steps": [{"color": c, "value": v} for c, v in steps]}


def mappings(values: dict[str, tuple[str, str]]) -> list[dict]:
    options = {
        k: {"text": text, "color": color, "index": i} for i, (k, (text, color)) in enumerate(values.items())
    }
    return [{"type": "value", "options": options}]


def override(matcher: str, name: str, **props: object) -> dict:
    return {
        "matcher": {"id": matcher, "options": name},
        "properties": [{"id": k.replace("__", "."), "value": v} for k, v in props.items()],
    }


def by_name(name: str, **props: object) -> dict:
    return override("byName", name, **props)


def by_ref(ref: str, **props: object) -> dict:
    return override("byFrameRefID", ref, **props)


def field_config(
    unit: str,
    steps: list[tuple[str, float | None]] | None = None,
    value_map: dict[str, tuple[str, str]] | None = None,
    overrides: list[dict] | None = None,
    links: list[dict] | None = None,
    no_value: str | None = None,
    custom: dict | None = None,
    decimals: int | None = None,
) -> dict:
    defaults: dict = {
        "unit": unit,
        "color": {"mode": "thresholds" if steps or value_map else "palette-classic"},
        "thresholds": thresholds(steps or [("green", None)]),
        "mappings": mappings(value_map) if value_map else [],
    }
    if links:
        defaults["links"] = links
    if no_value is not None:
        defaults["noValue"] = no_value
    if custom:
        defaults["custom"] = custom
    if decimals is not None:
        defaults["decimals"] = decimals
    return {"defaults": defaults, "overrides": overrides or []}


def panel(kind: str, title: str, description: str, tgts: list[dict], w: int, h: int, **extra: object) -> dict:
    p = {
        "type": kind,
        "title": title,
        "description": description,
        "datasource": DS,
        "targets": tgts,
        "gridPos": {"w": w, "h": h},
    }
    p.update(extra)
    return p


def reduce_last() -> dict:
    return {"calcs": ["lastNotNull"], "fields": "", "values": False}


def timeseries(
    title: str,
    description: str,
    tgts: list[dict],
    unit: str,
    w: int = 12,
    h: int = 8,
    stack: bool = False,
    overrides: list[dict] | None = None,
    links: list[dict] | None = None,
) -> dict:
    custom = {
        "drawStyle": "line",
        "lineWidth": 1,
        "fillOpacity": 30 if stack else 10,
        "showPoints": "never",
        "spanNulls": False,
        "stacking": {"mode": "normal" if stack else "none", "group": "A"},
        "axisSoftMin": 0,
    }
    return panel(
        "timeseries",
        title,
        description,
        tgts,
        w,
        h,
        fieldConfig=field_config(unit, overrides=overrides, links=links, custom=custom),
        options={
            "legend": {
                "displayMode": "table",
                "placement": "bottom",
                "showLegend": True,
                "calcs": ["lastNotNull"],
            },
            "tooltip": {"mode": "multi", "sort": "desc"},
        },
    )


def stat(
    title: str,
    description: str,
    tgts: list[dict],
    unit: str,
    w: int = 4,
    h: int = 4,
    steps: list[tuple[str, float | None]] | None = None,
    value_map: dict[str, tuple[str, str]] | None = None,
    overrides: list[dict] | None = None,
    no_value: str | None = None,
    links: list[dict] | None = None,
) -> dict:
    return panel(
        "stat",
        title,
        description,
        tgts,
        w,
        h,
        fieldConfig=field_config(unit, steps, value_map, overrides, links, no_value),
        options={
            "reduceOptions": reduce_last(),
            "colorMode": "background" if steps or value_map else "value",
            "graphMode": "none",
            "justifyMode": "auto",
            "orientation": "auto",
            "textMode": "auto",
            "showPercentChange": False,
            "wideLayout": True,
        },
    )


def gauge(
    title: str,
    description: str,
    tgts: list[dict],
    unit: str,
    w: int = 4,
    h: int = 6,
    steps: list[tuple[str, float | None]] | None = None,
) -> dict:
    cfg = field_config(unit, steps, decimals=1)
    cfg["defaults"].update({"min": 0, "max": 1} if unit == "percentunit" else {"min": 0})
    return panel(
        "gauge",
        title,
        description,
        tgts,
        w,
        h,
        fieldConfig=cfg,
        options={"reduceOptions": reduce_last(), "showThresholdLabels": False, "showThresholdMarkers": True},
    )


def bargauge(
    title: str,
    description: str,
    tgts: list[dict],
    unit: str,
    w: int = 8,
    h: int = 8,
    links: list[dict] | None = None,
    steps: list[tuple[str, float | None]] | None = None,
) -> dict:
    cfg = field_config(unit, steps, links=links)
    cfg["defaults"]["min"] = 0
    if not steps:
        cfg["defaults"]["color"] = {"mode": "continuous-BlPu"}
    return panel(
        "bargauge",
        title,
        description,
        tgts,
        w,
        h,
        fieldConfig=cfg,
        options={
            "reduceOptions": reduce_last(),
            "displayMode": "gradient",
            "orientation": "horizontal",
            "showUnfilled": True,
            "valueMode": "color",
            "namePlacement": "auto",
            "sizing": "auto",
            "minVizHeight": 16,
            "maxVizHeight": 300,
        },
    )


def table(
    title: str,
    description: str,
    tgts: list[dict],
    columns: dict[str, tuple[str, str]],
    sort_by: str,
    w: int = 12,
    h: int = 8,
    desc: bool = True,
    hide: tuple[str, ...] = ("job", "instance"),
    overrides: list[dict] | None = None,
) -> dict:
    """An instant table: each target's `Value #<ref>` becomes a named column with its unit; the frames
    are merged on their labels and the bookkeeping columns hidden. No columns: an info metric's labels."""
    rename = {f"Value #{ref}": name for ref, (name, _unit) in columns.items()}
    if len(tgts) == 1 and columns:  # Grafana names the value column "Value" when there is one query
        rename = {"Value": next(iter(columns.values()))[0]}
    excluded = {"Time": True, "__name__": True, **{label: True for label in hide}}
    units = [by_name(name, unit=unit) for name, unit in columns.values()]
    return panel(
        "table",
        title,
        description,
        tgts,
        w,
        h,
        fieldConfig=field_config("short", overrides=units + (overrides or []), custom={"align": "auto"}),
        options={
            "showHeader": True,
            "cellHeight": "sm",
            "footer": {"show": False, "reducer": ["sum"], "fields": "", "countRows": False},
            "sortBy": [{"displayName": sort_by, "desc": desc}],
        },
        transformations=[
            {"id": "merge", "options": {}},
            {
                "id": "organize",
                "options": {"excludeByName": excluded, "renameByName": rename, "indexByName": {}},
            },
        ],
    )


def row(title: str) -> dict:
    return {"type": "row", "title": title, "collapsed": False, "panels": [], "gridPos": {"w": 24, "h": 1}}


def collapsed(panels: list[dict]) -> list[dict]:
    """A row function's [row, *panels] as one closed row holding its panels: for a part of the
    exporter that is off unless configured, whose panels would otherwise say "No data"."""
    head, *rest = panels
    assert head["type"] == "row", head
    return [{**head, "collapsed": True, "panels": rest}]
