"""The README's flags table lists exactly the flags the exporter accepts."""

import re
from pathlib import Path

from exporter.config import FLAGS, env_name

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_flags_table_matches_the_parser():
    rows = re.findall(r"^\| `--([a-z.\-]+)` \| `?([A-Z_]*)`? \|", README.read_text(), re.M)
    documented = {name: env for name, env in rows if name != "version"}
    assert set(documented) == {name for name, _, _ in FLAGS}
    for name, env in documented.items():
        assert env == env_name(name), name
