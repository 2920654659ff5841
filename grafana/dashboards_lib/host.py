"""The host dashboard: where one Docker host's disk went and when it will be full."""

from __future__ import annotations

from .dashboard import HOST_UID, JOB_VAR, dashboard, datasource_variable, query_variable
from .host_disk import biggest_objects_row, filesystem_row, where_the_space_went_row
from .host_registry import registry_row
from .host_status import counts_row, exporter_health_row
from .panels import collapsed


def host_panels() -> list[dict]:
    """The rows top to bottom; each row function returns its row panel and the panels under it
    (`collapsed` folds them into a closed row)."""
    return [
        *filesystem_row(),
        *where_the_space_went_row(),
        *biggest_objects_row(),
        *counts_row(),
        # Off unless --registry.root is given: closed, so hosts without a registry show no empty panels.
        *collapsed(registry_row()),
        *exporter_health_row(),
    ]


def host_dashboard() -> dict:
    instance = query_variable(
        "instance",
        "Host",
        'label_values(docker_storage_exporter_build_info{job=~"$job"}, instance)',
        multi=False,
    )
    return dashboard(
        HOST_UID,
        "Docker storage / Host",
        "Where one Docker host's disk went and when it will be full (docker-storage-exporter).",
        [datasource_variable(), JOB_VAR, instance],
        host_panels(),
        "Docker storage / Fleet",
    )
