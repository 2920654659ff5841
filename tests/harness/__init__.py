"""Test harness: a private Docker Engine, its seeded state, the exporter as a process,
and a recording proxy for the engine socket."""

# Lines a test wants shown in pytest's closing summary (e.g. how many panel queries the
# end-to-end test evaluated); conftest.py prints them.
SUMMARY: list[str] = []


BOLT_NOT_BUILT = (
    "the C bolt walk (exporter/sources/_bolt.c) is not built, or DSE_BOLT=python set it aside:"
    " install gcc and Python's headers, then `pip install -e .` (make venv) again"
)
