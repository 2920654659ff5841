"""What the dashboards share around their panels: uids, links, variables and the layout."""

from __future__ import annotations

from collections.abc import Iterator
from itertools import count

from .queries import DS

TAGS = ["docker", "docker-storage"]
HOST_UID = "docker-storage-host"
FLEET_UID = "docker-storage-fleet"


def host_link(instance_ref: str) -> dict:
    """A data link from a fleet panel to the host dashboard of the clicked instance."""
    return {
        "title": "Open the host dashboard",
        "url": f"/d/{HOST_UID}/docker-storage-host?var-datasource=${{datasource}}&var-job=${{job}}"
        f"&var-instance={instance_ref}&${{__url_time_range}}",
    }


TABLE_LINK = host_link("${__data.fields.instance}")
FIELD_LINK = host_link("${__field.labels.instance}")


def layout(panels: list[dict]) -> list[dict]:
    """Numbers the panels and places them left to right, wrapping at 24 columns; a row starts a line.
    A collapsed row holds its panels (Grafana shows them when it is opened): they are placed below
    it as if it were open, numbered on, and take no room in the grid while it is closed."""
    ids = count(1)
    _place(panels, 0, ids)
    return panels


def _place(panels: list[dict], y: int, ids: Iterator[int]) -> int:
    """Places `panels` from line `y` on; returns the line below them."""
    x = line_h = 0
    for p in panels:
        pos = p["gridPos"]
        if p["type"] == "row" or x + pos["w"] > 24:
            x, y, line_h = 0, y + line_h, 0
        pos.update({"x": x, "y": y})
        p["id"] = next(ids)
        x, line_h = x + pos["w"], max(line_h, pos["h"])
        if p["type"] == "row":
            x, y, line_h = 0, y + pos["h"], 0
            if p["collapsed"]:
                _place(p["panels"], y, ids)
    return y + line_h


def datasource_variable() -> dict:
    return {
        "type": "datasource",
        "name": "datasource",
        "label": "Data source",
        "query": "prometheus",
        "current": {},
        "hide": 0,
        "includeAll": False,
        "multi": False,
        "options": [],
        "refresh": 1,
        "regex": "",
        "skipUrlSync": False,
    }


def query_variable(name: str, label: str, query: str, *, multi: bool) -> dict:
    return {
        "type": "query",
        "name": name,
        "label": label,
        "datasource": DS,
        "definition": query,
        "query": {"query": query, "refId": "PrometheusVariableQueryEditor-VariableQuery"},
        "current": {},
        "hide": 0,
        "includeAll": multi,
        "allValue": ".+" if multi else None,
        "multi": multi,
        "options": [],
        "refresh": 2,
        "regex": "",
        "skipUrlSync": False,
        "sort": 1,
    }


JOB_VAR = query_variable("job", "Job", "label_values(docker_storage_exporter_build_info, job)", multi=True)


def dashboard(
    uid: str, title: str, description: str, variables: list[dict], panels: list[dict], other: str
) -> dict:
    return {
        "uid": uid,
        "title": title,
        "description": description,
        "tags": TAGS,
        "editable": True,
        "graphTooltip": 1,
        "fiscalYearStartMonth": 0,
        "liveNow": False,
        "refresh": "1m",
        "schemaVersion": 39,
        "version": 1,
        "time": {"from": "now-24h", "to": "now"},
        "timepicker": {},
        "timezone": "",
        "weekStart": "",
        "annotations": {
            "list": [
                {
                    "builtIn": 1,
                    "datasource": {"type": "grafana", "uid": "-- Grafana --"},
                    "enable": True,
                    "hide": True,
                    "iconColor": "rgba(0, 211, 255, 1)",
                    "name": "Annotations & Alerts",
                    "type": "dashboard",
                }
            ]
        },
        "links": [
            {
                "type": "link",
                "title": other,
                "url": f"/d/{FLEET_UID if uid == HOST_UID else HOST_UID}",
                "icon": "dashboard",
                "includeVars": True,
                "keepTime": True,
                "asDropdown": False,
                "targetBlank": False,
                "tags": [],
                "tooltip": "",
            },
            {
                "type": "dashboards",
                "title": "Docker storage",
                "tags": ["docker-storage"],
                "icon": "external link",
                "includeVars": True,
                "keepTime": True,
                "asDropdown": True,
                "targetBlank": False,
                "tooltip": "",
                "url": "",
            },
        ],
        "templating": {"list": variables},
        "panels": layout(panels),
    }
