"""Test harness: a private Docker Engine, its seeded state, the exporter as a process,
and a recording proxy for the engine socket."""
