"""The Grafana dashboards as Python, built by grafana/generate.py.

    queries    the dashboards' label filters and PromQL helpers, and query targets
    panels     colours, field config and the panel builders
    dashboard  the uids, the variables, the panel layout and the dashboard around the panels
    host       the host dashboard: one function per row, in host_disk, host_status and host_registry
    fleet      the fleet dashboard

Imported as the package `dashboards_lib`: grafana/generate.py puts grafana/ on sys.path, so it
works run as a script and loaded by path (tests/test_dashboards.py).
"""
