"""Test harness: a private Docker Engine, its seeded state, the exporter as a process,
and a recording proxy for the engine socket."""

# Lines a test wants shown in pytest's closing summary (e.g. how many panel queries the
# end-to-end test evaluated); conftest.py prints them.
SUMMARY: list[str] = []
