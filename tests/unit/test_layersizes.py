"""Layer sizes from what API 1.41 tells: history alignment, sums along chains, image configs.

The hand-built hosts here are the shapes a real 20.10 engine makes: the exporter's own image
(a RUN that changed no file content makes a real layer whose history entry says 0), BuildKit
images that part where such a layer is, and configs read from a Docker root."""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from pathlib import Path

import pytest

from exporter.imagesizes import EMPTY_LAYER, RawImage, infer_sizes, layer_chain, sizes_from_layers
from exporter.layersizes import ROOT, LayerChain, LayerSizes, align
from exporter.model import DiskUsage
from exporter.sources.imageconfig import history_empty_layers
from exporter.sources.layout import chain_ids


def sha(c: str) -> str:
    return "sha256:" + c * 64


def raw(iid: str, tags: tuple[str, ...] = (), size: int = 0, parent: str = "") -> RawImage:
    return RawImage(id=iid, tags=tags, parent_id=parent, created=0.0, size=size)


def inspect_of(*diffs: str) -> dict:
    return {"RootFS": {"Type": "layers", "Layers": list(diffs)}}


def history_of(*sizes: int) -> list[dict]:
    """Oldest first as given; the API lists newest first."""
    return [{"Id": "<missing>", "Size": s} for s in sizes][::-1]


# The exporter's own image as 20.10 builds it (figures from a real build): the imported base,
# ARG, LABEL, the COPY of the venv, ENV, the RUN that checks the walk (a real layer of 0
# bytes), USER, EXPOSE, HEALTHCHECK, ENTRYPOINT.
BASE, VENV = 265_436_893, 10_796_872
EXPORTER_HISTORY = (BASE, 0, 0, VENV, 0, 0, 0, 0, 0, 0)
EXPORTER_EMPTY = (False, True, True, False, True, False, True, True, True, True)


def exporter_host() -> tuple[list[RawImage], dict[str, LayerChain]]:
    d_base, d_venv, d_run = sha("b"), sha("v"), sha("r")
    images = [
        raw("base", ("dse-python-base:bookworm",), BASE),
        raw("app", ("dse-exporter:test",), BASE + VENV),
    ]
    chains = {
        "base": layer_chain(inspect_of(d_base), history_of(BASE), BASE),
        "app": layer_chain(inspect_of(d_base, d_venv, d_run), history_of(*EXPORTER_HISTORY), BASE + VENV),
    }
    return images, chains


# --- align ------------------------------------------------------------------------------


def test_align_a_zero_entry_that_may_or_may_not_be_a_layer() -> None:
    found = align(EXPORTER_HISTORY, 3)
    assert found is not None
    # The base is the first entry whichever 0 made the third layer; the second layer is the
    # venv or a 0 before it; the cumulative size after the second layer is open, the top's not.
    assert found.sizes == [frozenset({BASE}), frozenset({0, VENV}), frozenset({0, VENV})]
    assert found.cumulative == [frozenset({BASE}), frozenset({BASE, BASE + VENV}), frozenset({BASE + VENV})]


def test_align_every_non_zero_entry_is_a_layer() -> None:
    assert align((5, 0, 7), 1) is None  # two non-zero entries, one layer
    assert align((5, 7), 3) is None  # more layers than entries
    assert align((0, 0), 0) is not None and align((3,), 0) is None


def test_align_fixed_sizes_and_cumulative_sizes_settle_it() -> None:
    # A layer known to be 0 (the empty tar) must take a 0 entry: here only the one after 7.
    found = align((5, 7, 0), 3, fixed=[None, None, 0])
    assert found is not None and found.sizes == [frozenset({5}), frozenset({7}), frozenset({0})]
    # Another image says the cumulative size after the second layer is 5: the 0 is before 7.
    found = align((5, 0, 7, 0), 3, cumulative=[None, 5, None])
    assert found is not None and found.sizes == [frozenset({5}), frozenset({0}), frozenset({7})]
    assert align((5, 0, 7, 0), 3, cumulative=[None, 6, None]) is None


def test_align_agrees_with_brute_force() -> None:
    from itertools import combinations, product

    for steps in product((0, 2, 3), repeat=5):
        for n in range(0, 6):
            ways = [c for c in combinations(range(5), n) if all(j in c for j in range(5) if steps[j])]
            found = align(steps, n)
            if not ways:
                assert found is None, (steps, n)
                continue
            assert found is not None
            for i in range(n):
                assert found.sizes[i] == {steps[w[i]] for w in ways}, (steps, n, i)
                assert found.cumulative[i] == {sum(steps[: w[i] + 1]) for w in ways}, (steps, n, i)


# --- layer_chain ------------------------------------------------------------------------


def test_layer_chain_keeps_what_the_history_settles_and_the_history_for_later() -> None:
    _, chains = exporter_host()
    app = chains["app"]
    assert app.sizes == (BASE, None, None)
    assert app.steps == EXPORTER_HISTORY
    assert chains["base"].steps == ()  # settled alone: nothing to keep


def test_layer_chain_with_the_configs_empty_layer_flags_is_exact() -> None:
    lc = layer_chain(
        inspect_of(sha("b"), sha("v"), sha("r")), history_of(*EXPORTER_HISTORY), BASE + VENV, EXPORTER_EMPTY
    )
    assert lc.sizes == (BASE, VENV, 0) and lc.steps == ()


def test_layer_chain_ignores_flags_that_do_not_fit() -> None:
    diffs = inspect_of(sha("b"), sha("v"), sha("r"))
    history = history_of(*EXPORTER_HISTORY)
    for flags in (EXPORTER_EMPTY[:-1], (False,) * 10, (True,) * 10):
        assert layer_chain(diffs, history, BASE + VENV, flags).sizes == (BASE, None, None)
    # An empty-tar layer flagged as made by a non-zero entry: not believed either.
    diffs = inspect_of(sha("b"), EMPTY_LAYER, sha("r"))
    assert layer_chain(diffs, history, BASE + VENV, EXPORTER_EMPTY).sizes == (BASE, 0, VENV)


def test_layer_chain_of_an_empty_image_is_zeros() -> None:
    lc = layer_chain(inspect_of(sha("1"), sha("2")), [], 0)
    assert lc.sizes == (0, 0)


# --- the exporter's own image -----------------------------------------------------------


def test_the_exporters_image_totals_and_unique_sizes_need_no_single_layer() -> None:
    images, chains = exporter_host()
    sizes = sizes_from_layers(images, chains, Counter({"app": 1}))
    assert sizes.unique == {"base": 0, "app": VENV}
    assert sizes.unknown == 0
    assert sizes.usage == DiskUsage(used=BASE + VENV, reclaimable=BASE)
    # The two layers above the base stay unknown one by one: only their sum is known.
    known = infer_sizes(chains, {i.id: i.size for i in images})
    app_chain = chains["app"].chain
    assert known == {app_chain[0]: BASE}


def test_an_image_missing_its_chain_leaves_the_totals_unknown() -> None:
    images, chains = exporter_host()
    del chains["base"]
    sizes = sizes_from_layers(images, chains, Counter())
    # The base layer is the app's too, so the base image's own figures are unknown, and so
    # is Images SIZE: the base image might hold more layers.
    assert sizes.unique["base"] is None and sizes.usage is None


# --- images that part where the history is open -----------------------------------------


def parted_host(flags: bool) -> tuple[list[RawImage], dict[str, LayerChain]]:
    """Two BuildKit images: FROM base / ENV / RUN mkdir (a 0-byte layer) / COPY a file of 40
    bytes (other bytes in each) / CMD. They part above the RUN layer; from each history alone
    the RUN layer could be the ENV entry's place or the CMD's."""
    history = (100, 0, 0, 40, 0)
    empty = (False, True, False, False, True) if flags else None
    images = [raw("base", ("base:1",), 100), raw("x", ("x:1",), 140), raw("y", ("y:1",), 140)]
    chains = {
        "base": layer_chain(inspect_of(sha("b")), history_of(100), 100),
        "x": layer_chain(inspect_of(sha("b"), sha("m"), sha("x")), history_of(*history), 140, empty),
        "y": layer_chain(inspect_of(sha("b"), sha("m"), sha("y")), history_of(*history), 140, empty),
    }
    return images, chains


def test_images_parting_where_history_is_open_need_the_configs() -> None:
    images, chains = parted_host(flags=False)
    sizes = sizes_from_layers(images, chains, Counter())
    # The shared RUN layer could be 0 or 40 bytes: nothing that depends on it is known.
    assert sizes.unique == {"base": 0, "x": None, "y": None}
    assert sizes.usage is None
    images, chains = parted_host(flags=True)
    sizes = sizes_from_layers(images, chains, Counter({"x": 2}))
    assert sizes.unique == {"base": 0, "x": 40, "y": 40}
    assert sizes.usage == DiskUsage(used=180, reclaimable=140)


def test_another_images_history_settles_an_open_one() -> None:
    # y's history is plain (its COPY is 30 bytes): the RUN layer is 0, so x's layers are known.
    images = [raw("x", ("x:1",), 140), raw("y", ("y:1",), 130)]
    chains = {
        "x": layer_chain(inspect_of(sha("b"), sha("m"), sha("x")), history_of(100, 0, 0, 40, 0), 140),
        "y": layer_chain(inspect_of(sha("b"), sha("m"), sha("y")), history_of(100, 0, 30), 130),
    }
    assert chains["x"].sizes == (100, None, None)
    sizes = sizes_from_layers(images, chains, Counter())
    assert sizes.unique == {"x": 40, "y": 30}
    assert sizes.usage == DiskUsage(used=170, reclaimable=170)
    solved = LayerSizes(chains, {"x": 140, "y": 130})
    assert [solved.layer(c) for c in chains["x"].chain] == [100, 0, 40]


def test_an_intermediate_image_settles_the_cumulative_size() -> None:
    # The classic builder leaves an image at each step: its Size is the cumulative size there.
    images = [
        raw("mid", (), 100, parent=""),
        raw("x", ("x:1",), 140, parent="mid"),
        raw("y", ("y:1",), 150, parent="mid"),
    ]
    chains = {
        "mid": LayerChain(chain_ids([sha("b"), sha("m")]), (None, None)),
        "x": LayerChain(chain_ids([sha("b"), sha("m"), sha("x")]), (None, None, None)),
        "y": LayerChain(chain_ids([sha("b"), sha("m"), sha("y")]), (None, None, None)),
    }
    sizes = sizes_from_layers(images, chains, Counter())
    assert sizes.unique == {"mid": 0, "x": 40, "y": 50}
    assert sizes.usage == DiskUsage(used=190, reclaimable=190)


def test_layers_between_equal_cumulative_sizes_are_zero() -> None:
    # x is base plus two layers and no bytes more: both are 0, whatever the history says.
    images = [raw("base", ("base:1",), 100), raw("x", ("x:1",), 100), raw("z", ("z:1",), 107)]
    chains = {
        "base": LayerChain(chain_ids([sha("b")]), (100,)),
        "x": LayerChain(chain_ids([sha("b"), sha("1"), sha("2")]), (None, None, None)),
        "z": LayerChain(chain_ids([sha("b"), sha("1"), sha("3")]), (None, None, None)),
    }
    sizes = sizes_from_layers(images, chains, Counter())
    assert sizes.unique == {"base": 0, "x": 0, "z": 7}
    assert sizes.usage == DiskUsage(used=107, reclaimable=107)


def test_contradicting_facts_make_figures_unknown_not_wrong() -> None:
    # Two images with the same single layer but different sizes: not from a real engine.
    images = [raw("a", ("a:1",), 10), raw("b", ("b:1",), 12)]
    chains = {
        "a": LayerChain(chain_ids([sha("1")]), (None,)),
        "b": LayerChain(chain_ids([sha("1")]), (None,)),
    }
    sizes = sizes_from_layers(images, chains, Counter())
    assert sizes.unique == {"a": None, "b": None} and sizes.usage is None


def test_a_chain_id_with_two_parents_is_unknown() -> None:
    solved = LayerSizes(
        {"a": LayerChain(("p", "c"), (1, 2)), "b": LayerChain(("q", "c"), (3, 4))}, {"a": 3, "b": 7}
    )
    assert solved.layer("c") is None and solved.cumulative("c") is None
    assert solved.cumulative(ROOT) == 0


# --- image configs on disk --------------------------------------------------------------


def put_config(root: Path, config: dict) -> str:
    data = json.dumps(config).encode()
    hexid = hashlib.sha256(data).hexdigest()
    d = root / "image" / "overlay2" / "imagedb" / "content" / "sha256"
    d.mkdir(parents=True, exist_ok=True)
    (d / hexid).write_bytes(data)
    return f"sha256:{hexid}"


def test_history_empty_layers_from_a_config(tmp_path: Path) -> None:
    iid = put_config(
        tmp_path, {"history": [{"created_by": "a"}, {"empty_layer": True}, {"empty_layer": False}]}
    )
    assert history_empty_layers(str(tmp_path), "overlay2", iid) == (False, True, False)
    assert history_empty_layers(str(tmp_path), "overlay2", iid.removeprefix("sha256:")) == (
        False,
        True,
        False,
    )


def test_history_empty_layers_refuses_what_is_not_the_images_config(tmp_path: Path) -> None:
    iid = put_config(tmp_path, {"history": [{"empty_layer": True}]})
    path = tmp_path / "image" / "overlay2" / "imagedb" / "content" / "sha256" / iid.removeprefix("sha256:")
    assert history_empty_layers(str(tmp_path), "vfs", iid) is None  # another driver's dir
    assert history_empty_layers(str(tmp_path), "../x", iid) is None
    assert history_empty_layers(str(tmp_path), "overlay2", "sha256:nothex") is None
    assert history_empty_layers(str(tmp_path), "overlay2", sha("0")) is None  # missing
    path.write_bytes(path.read_bytes() + b" ")  # not the bytes the ID hashes
    assert history_empty_layers(str(tmp_path), "overlay2", iid) is None
    no_history = put_config(tmp_path, {"rootfs": {}})
    assert history_empty_layers(str(tmp_path), "overlay2", no_history) is None
    # A link or a fifo where the config should be is never followed or waited on.
    target = put_config(tmp_path, {"history": []})
    linked = path.parent / ("e" * 64)
    linked.symlink_to(path.parent / target.removeprefix("sha256:"))
    assert history_empty_layers(str(tmp_path), "overlay2", "sha256:" + "e" * 64) is None
    fifo = path.parent / ("f" * 64)
    os.mkfifo(fifo)
    assert history_empty_layers(str(tmp_path), "overlay2", "sha256:" + "f" * 64) is None


@pytest.mark.parametrize("bad", [b"[]", b"not json", b'{"history": [1, 2]}', b'{"history": {}}'])
def test_history_empty_layers_tolerates_odd_configs(tmp_path: Path, bad: bytes) -> None:
    d = tmp_path / "image" / "overlay2" / "imagedb" / "content" / "sha256"
    d.mkdir(parents=True)
    hexid = hashlib.sha256(bad).hexdigest()
    (d / hexid).write_bytes(bad)
    assert history_empty_layers(str(tmp_path), "overlay2", hexid) is None
