"""Shared helpers for the unit tests: recorded Engine API responses under fixtures/."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

FIXTURES = Path(__file__).parent / "fixtures"

API_VERSIONS = ("1.41", "1.44", "1.51", "1.52")


@pytest.fixture
def load_fixture() -> Callable[[str], Any]:
    def load(name: str) -> Any:
        return json.loads((FIXTURES / name).read_text(encoding="utf-8"))

    return load


@pytest.fixture
def mountinfo_path() -> Path:
    return FIXTURES / "mountinfo.txt"
