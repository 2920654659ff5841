"""exporter.imagesizes: chain IDs, references, layer sizes and `docker system df` math."""

from __future__ import annotations

import hashlib
import json
from collections import Counter

import pytest

from exporter.imagesizes import (
    EMPTY_LAYER,
    LayerChain,
    RawImage,
    Sizes,
    build_images,
    chain_ids,
    classify,
    image_registry,
    infer_sizes,
    layer_chain,
    parse_images,
    registry_of,
    sizes_from_df,
    sizes_from_layers,
    split_reference,
)
from exporter.model import DiskUsage


def sha(c: str) -> str:
    return "sha256:" + c * 64


def raw(iid: str, tags: tuple[str, ...] = (), size: int = 0, parent: str = "") -> RawImage:
    return RawImage(id=iid, tags=tags, parent_id=parent, created=0.0, size=size)


# --- chain IDs --------------------------------------------------------------------------


def test_chain_ids_definition() -> None:
    d0, d1, d2 = sha("1"), sha("2"), sha("3")
    c1 = "sha256:" + hashlib.sha256(f"{d0} {d1}".encode()).hexdigest()
    c2 = "sha256:" + hashlib.sha256(f"{c1} {d2}".encode()).hexdigest()
    assert chain_ids([d0, d1, d2]) == (d0, c1, c2)
    assert chain_ids([]) == ()


def test_chain_ids_match_a_real_layerdb(load_fixture) -> None:
    """Every chain ID computed from a recorded image's diff IDs is a real layerdb directory."""
    doc = load_fixture("api-1.41.json")
    layerdb = doc["layerdb"]
    for inspect in doc["inspect"].values():
        diffs = inspect["RootFS"]["Layers"]
        chain = chain_ids(diffs)
        for i, (cid, diff) in enumerate(zip(chain, diffs, strict=True)):
            assert cid in layerdb
            assert layerdb[cid]["diff"] == diff
            assert layerdb[cid].get("parent") == (chain[i - 1] if i else None)


# --- references -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ref", "registry"),
    [
        ("nginx:1", "docker.io"),
        ("nginx", "docker.io"),
        ("library/nginx", "docker.io"),
        ("user/app:1", "docker.io"),
        ("docker.io/library/nginx:1", "docker.io"),
        ("ghcr.io/a/b:1", "ghcr.io"),
        ("ghcr.io/a/b@sha256:" + "0" * 64, "ghcr.io"),
        ("localhost:5000/x:1", "localhost:5000"),
        ("localhost/x", "localhost"),
        (
            "123456789012.dkr.ecr.us-east-1.amazonaws.com/team/app:v3",
            "123456789012.dkr.ecr.us-east-1.amazonaws.com",
        ),
        ("registry.example.com:443/app", "registry.example.com:443"),
    ],
)
def test_registry_of(ref: str, registry: str) -> None:
    assert registry_of(ref) == registry


@pytest.mark.parametrize(
    ("ref", "split"),
    [
        ("host:5000/a/b:v1", ("host:5000/a/b", "v1")),
        ("host:5000/a/b", ("host:5000/a/b", "")),
        ("a/b", ("a/b", "")),
        ("nginx:1.25-alpine", ("nginx", "1.25-alpine")),
        ("", ("", "")),
    ],
)
def test_split_reference(ref: str, split: tuple[str, str]) -> None:
    assert split_reference(ref) == split


# --- layer chains and sizes -------------------------------------------------------------


def inspect_of(*diffs: str) -> dict:
    return {"RootFS": {"Type": "layers", "Layers": list(diffs)}}


def history_of(*sizes: int) -> list[dict]:
    """History entries, given oldest first as a Dockerfile reads; the API lists newest first."""
    return [{"Id": "<missing>", "Size": s, "CreatedBy": f"step {i}"} for i, s in enumerate(sizes)][::-1]


def test_layer_chain_aligned_history() -> None:
    # FROM base (100) / ENV (0) / RUN (20) / CMD (0)
    lc = layer_chain(inspect_of(sha("1"), sha("2")), history_of(100, 0, 20, 0), 120)
    assert lc.chain == chain_ids([sha("1"), sha("2")])
    assert lc.sizes == (100, 20)


def test_layer_chain_reads_history_newest_first() -> None:
    # If the order were not reversed, the base layer would get 5 and the top layer 1000.
    history = [{"Size": 5}, {"Size": 0}, {"Size": 1000}]  # newest first, as the API returns it
    lc = layer_chain(inspect_of(sha("1"), sha("2")), history, 1005)
    assert lc.sizes == (1000, 5)


def test_layer_chain_empty_layer_diff_ids_are_zero() -> None:
    # A RUN that changed nothing records the empty tar as its diff ID and 0 in history.
    diffs = (sha("1"), EMPTY_LAYER, sha("2"))
    lc = layer_chain(inspect_of(*diffs), history_of(100, 0, 7), 107)
    assert lc.sizes == (100, 0, 7)
    assert len(lc.chain) == 3


def test_layer_chain_misaligned_history_leaves_sizes_unknown() -> None:
    # Two non-empty layers, but history shows three non-zero steps: do not guess.
    lc = layer_chain(inspect_of(sha("1"), sha("2")), history_of(100, 10, 10), 120)
    assert lc.sizes == (None, None)


def test_layer_chain_history_not_adding_up_leaves_sizes_unknown() -> None:
    lc = layer_chain(inspect_of(sha("1"), sha("2")), history_of(100, 20), 999)
    assert lc.sizes == (None, None)


def test_layer_chain_tolerates_garbage() -> None:
    lc = layer_chain({"RootFS": None}, None, 0)
    assert lc == LayerChain(chain=(), sizes=())
    lc = layer_chain(inspect_of(sha("1"), 7, None), [{"Size": "x"}, "junk", {"Size": -4}], 0)  # type: ignore[arg-type]
    assert lc.chain == (sha("1"),)
    assert lc.sizes == (0,)


def test_layer_chain_on_recorded_images_matches_layerdb_sizes(load_fixture) -> None:
    doc = load_fixture("api-1.41.json")
    layerdb = doc["layerdb"]
    for iid, inspect in doc["inspect"].items():
        lc = layer_chain(inspect, doc["history"][iid], inspect["Size"])
        assert None not in lc.sizes, iid
        for cid, size in zip(lc.chain, lc.sizes, strict=True):
            assert size == int(layerdb[cid]["size"]), (iid, cid)


def test_infer_sizes_fills_the_single_unknown_layer() -> None:
    base, top = chain_ids([sha("1")]), chain_ids([sha("1"), sha("2")])
    chains = {
        "base": LayerChain(base, (100,)),
        "app": LayerChain(top, (None, None)),  # history was misaligned
    }
    known = infer_sizes(chains, {"base": 100, "app": 130})
    assert known == {top[0]: 100, top[1]: 30}


def test_infer_sizes_propagates_across_images() -> None:
    a = chain_ids([sha("1")])
    b = chain_ids([sha("1"), sha("2")])
    c = chain_ids([sha("1"), sha("2"), sha("3")])
    chains = {
        "c": LayerChain(c, (None, None, None)),
        "b": LayerChain(b, (None, None)),
        "a": LayerChain(a, (None,)),
    }
    known = infer_sizes(chains, {"a": 10, "b": 30, "c": 60})
    assert known == {c[0]: 10, c[1]: 20, c[2]: 30}


def test_infer_sizes_leaves_two_unknowns_unknown() -> None:
    c = chain_ids([sha("1"), sha("2")])
    assert infer_sizes({"x": LayerChain(c, (None, None))}, {"x": 10}) == {}


# --- states -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tags", "containers", "is_parent", "state"),
    [
        ((), 1, True, "in_use"),  # in_use beats intermediate
        ((), 2, False, "in_use"),  # in_use beats dangling
        (("a:1",), 1, False, "in_use"),
        ((), 0, True, "intermediate"),  # intermediate beats dangling
        ((), 0, False, "dangling"),
        (("a:1",), 0, True, "unused"),  # a tagged parent is not intermediate
        (("a:1",), 0, False, "unused"),
    ],
)
def test_classify_precedence(tags: tuple[str, ...], containers: int, is_parent: bool, state: str) -> None:
    img = raw(sha("a"), tags)
    assert classify(img, containers, {img.id} if is_parent else set()) == state


# --- sizes_from_layers (API 1.41) -------------------------------------------------------


def test_sizes_from_layers_reproduces_docker_system_df() -> None:
    """A hand-built host, checked against Docker's definitions.

    base (tagged, 100)           layers L0
    mid (untagged, parent of app) L0 L1(+20)
    app (tagged, 130, 1 container) L0 L1 L2(+10)
    other (tagged, 105)          L0 L3(+5)
    lonely (dangling, 40)        L4
    """
    l0, l1, l2, l3, l4 = sha("0"), sha("1"), sha("2"), sha("3"), sha("4")
    images = [
        raw("base", ("base:1",), 100),
        raw("mid", (), 120, parent="base"),
        raw("app", ("app:1",), 130, parent="mid"),
        raw("other", ("other:1",), 105),
        raw("lonely", (), 40),
    ]
    chains = {
        "base": LayerChain(chain_ids([l0]), (100,)),
        "mid": LayerChain(chain_ids([l0, l1]), (100, 20)),
        "app": LayerChain(chain_ids([l0, l1, l2]), (100, 20, 10)),
        "other": LayerChain(chain_ids([l0, l3]), (100, 5)),
        "lonely": LayerChain(chain_ids([l4]), (40,)),
    }
    containers = Counter({"app": 1})
    sizes = sizes_from_layers(images, chains, containers)
    # L0 is in base, app and other (3 top-level images): shared. L1 is in mid and app, but mid
    # is not top-level, so only app holds it: unique to app.
    assert sizes.unique == {"base": 0, "mid": 0, "app": 30, "other": 5, "lonely": 40}
    assert sizes.unknown == 0
    total = 100 + 20 + 10 + 5 + 40
    assert sizes.usage == DiskUsage(used=total, reclaimable=total - 30)


def test_sizes_from_layers_unknown_layer_makes_unique_none() -> None:
    l0, l1, l2 = sha("0"), sha("1"), sha("2")
    images = [raw("a", ("a:1",), 110), raw("b", ("b:1",), 130)]
    chains = {
        "a": LayerChain(chain_ids([l0, l1]), (None, None)),
        "b": LayerChain(chain_ids([l0, l2]), (None, None)),
    }
    sizes = sizes_from_layers(images, chains, Counter({"a": 1}))
    assert sizes.unique == {"a": None, "b": None}
    assert sizes.unknown == 2
    assert sizes.usage is None


def test_sizes_from_layers_image_without_chain_is_unknown() -> None:
    images = [raw("a", ("a:1",), 10), raw("gone", ("g:1",), 20)]
    chains = {"a": LayerChain(chain_ids([sha("0")]), (10,))}
    sizes = sizes_from_layers(images, chains, Counter())
    assert sizes.unique == {"a": 10, "gone": None}
    assert sizes.unknown == 1


def _real_raw_images(doc: dict) -> list[RawImage]:
    images, skipped = parse_images(doc["images"])
    assert skipped == 0
    return images


def test_sizes_from_layers_equals_recorded_docker_system_df(load_fixture) -> None:
    doc = load_fixture("api-1.41.json")
    images = _real_raw_images(doc)
    chains = {i.id: layer_chain(doc["inspect"][i.id], doc["history"][i.id], i.size) for i in images}
    containers = Counter(c["ImageID"] for c in doc["containers"])
    sizes = sizes_from_layers(images, chains, containers)
    by_tag = {i.tags[0]: sizes.unique[i.id] for i in images if i.tags}
    assert by_tag == doc["expected"]["unique"]
    assert all(sizes.unique[i.id] == 0 for i in images if not i.tags)  # the intermediates
    assert sizes.usage == DiskUsage(doc["expected"]["images_used"], doc["expected"]["images_reclaimable"])
    # The engine's own df agrees too.
    assert doc["df"]["LayersSize"] == doc["expected"]["images_used"]


# --- sizes_from_df (API 1.42+) ----------------------------------------------------------


@pytest.mark.parametrize("api", ["1.44", "1.51", "1.52"])
def test_sizes_from_df_fixture_shapes(load_fixture, api: str) -> None:
    doc = load_fixture(f"api-{api}.json")
    images, _ = parse_images(doc["images"])
    containers = Counter(c["ImageID"] for c in doc["containers"])
    sizes = sizes_from_df(images, doc["df_image"], containers)
    exp = doc["expected"]
    assert sizes.unique == exp["unique"]
    assert sizes.unknown == 0
    assert sizes.usage == DiskUsage(exp["images_used"], exp["images_reclaimable"])
    built = {i.id: i.state for i in build_images(images, sizes, containers)}
    assert built == exp["states"]


def test_sizes_from_df_legacy_shape_by_hand() -> None:
    images = [
        raw("a", ("a:1",), 100),
        raw("b", ("b:1",), 60),
        raw("c", (), 50),  # dangling, engine gave no shared size
        raw("m", (), 55),  # intermediate: untagged parent of child; df does not list it
        raw("child", ("c:1",), 70, parent="m"),
    ]
    df = {
        "LayersSize": 200,
        "Images": [
            {"Id": "a", "SharedSize": 40},
            {"Id": "b", "SharedSize": 40},
            {"Id": "c", "SharedSize": -1},  # unknown
            {"Id": "child", "SharedSize": 0},
        ],
    }
    sizes = sizes_from_df(images, df, Counter({"a": 3}))
    assert sizes.unique == {"a": 60, "b": 20, "c": None, "m": 0, "child": 70}
    assert sizes.unknown == 1
    assert sizes.usage == DiskUsage(used=200, reclaimable=140)


def test_sizes_from_df_api_152_shape_by_hand() -> None:
    images = [raw("a", ("a:1",), 100), raw("b", ("b:1",), 60)]
    df = {
        "ImageUsage": {
            "TotalCount": 2,
            "ActiveCount": 1,
            "TotalSize": 120,
            "Reclaimable": 20,
            "Items": [{"Id": "a", "SharedSize": 40}, {"Id": "b", "SharedSize": 40}],
        }
    }
    sizes = sizes_from_df(images, df, Counter({"a": 1}))
    assert sizes.unique == {"a": 60, "b": 20}
    # 1.52 reports the totals itself; they are taken as the engine says.
    assert sizes.usage == DiskUsage(used=120, reclaimable=20)


def test_sizes_from_df_without_totals_has_no_usage() -> None:
    sizes = sizes_from_df([raw("a", ("a:1",), 10)], {"Images": [{"Id": "a", "SharedSize": 0}]}, Counter())
    assert sizes.unique == {"a": 10}
    assert sizes.usage is None
    assert sizes_from_df([raw("a", ("a:1",), 10)], None, Counter()).unique == {"a": None}


# --- parse_images -----------------------------------------------------------------------


def test_parse_images_recorded_141_listing(load_fixture) -> None:
    doc = load_fixture("api-1.41.json")
    images, skipped = parse_images(doc["images"])
    assert skipped == 0
    assert len(images) == 5
    untagged = [i for i in images if not i.tags]
    assert len(untagged) == 2  # the "<none>:<none>" placeholders are gone
    assert all(i.size > 0 for i in images)


@pytest.mark.parametrize("api", ["1.44", "1.51", "1.52"])
def test_parse_images_newer_listings(load_fixture, api: str) -> None:
    doc = load_fixture(f"api-{api}.json")
    images, skipped = parse_images(doc["images"])
    assert skipped == 0
    by_id = {i.id: i for i in images}
    assert by_id[sha("b")].tags == ("debian:12", "debian:bookworm")
    assert by_id[sha("c")].tags == ()
    assert by_id[sha("e")].parent_id == sha("d")
    assert by_id[sha("a")].size == 150_000_000


def test_parse_images_tolerance() -> None:
    listing = [
        {"Id": sha("1"), "RepoTags": ["<none>:<none>"], "Size": -1, "VirtualSize": 500, "Created": 10},
        {"Id": sha("2"), "RepoTags": None, "Size": None, "Created": None, "ParentId": None},
        {"Id": sha("3"), "RepoTags": ["b:1", "a:1", "a:1", 7, None, ""], "Size": "123", "Created": -5},
        {"Id": sha("4"), "Size": True, "VirtualSize": 9, "Created": 1.7e9},
        {"Id": sha("5"), "Size": -3},
        {"Id": sha("1"), "RepoTags": ["dup:1"], "Size": 1},  # duplicate: skipped and counted
        {"RepoTags": ["noid:1"]},  # no Id
        {"Id": None},
        {"Id": 12},
        "not an object",
        None,
    ]
    images, skipped = parse_images(listing)
    assert skipped == 6
    by_id = {i.id: i for i in images}
    assert list(by_id) == [sha("1"), sha("2"), sha("3"), sha("4"), sha("5")]
    assert by_id[sha("1")].tags == ()
    assert by_id[sha("1")].size == 500  # Size -1 falls back to VirtualSize
    assert by_id[sha("1")].created == 10.0
    assert by_id[sha("2")] == RawImage(sha("2"), (), "", 0.0, 0)
    assert by_id[sha("3")].tags == ("a:1", "b:1")
    assert by_id[sha("3")].size == 123
    assert by_id[sha("3")].created == 0.0
    assert by_id[sha("4")].size == 9
    assert by_id[sha("4")].created == 1.7e9
    assert by_id[sha("5")].size == 0


@pytest.mark.parametrize("listing", [None, {}, {"message": "server error"}, "[]", 42])
def test_parse_images_non_list(listing: object) -> None:
    assert parse_images(listing) == ([], 0)


# --- build_images -----------------------------------------------------------------------


def test_build_images_sorts_biggest_first_and_sets_registry() -> None:
    images = [
        raw(sha("1"), ("ghcr.io/a/b:1",), 10),
        raw(sha("2"), (), 30),
        raw(sha("3"), ("nginx:1",), 20),
    ]
    sizes = Sizes(unique={sha("1"): 10, sha("2"): None}, usage=None, unknown=1)
    built = build_images(images, sizes, Counter({sha("3"): 2}))
    assert [i.id for i in built] == [sha("2"), sha("3"), sha("1")]
    assert [i.registry for i in built] == ["none", "docker.io", "ghcr.io"]
    assert [i.state for i in built] == ["dangling", "in_use", "unused"]
    assert [i.unique_size for i in built] == [None, None, 10]
    assert built[1].containers == 2
    assert built[0].short_id == "2" * 12


# --- parse_images from the undecoded body ------------------------------------------------


@pytest.mark.parametrize("api", ["1.41", "1.44", "1.51", "1.52"])
def test_parse_images_body_equals_decoded(load_fixture, api: str) -> None:
    """EngineClient.images() hands over the raw body; decoding it item by item changes nothing."""
    listing = load_fixture(f"api-{api}.json")["images"]
    body = json.dumps(listing).encode()
    assert parse_images(body) == parse_images(listing)
    assert parse_images(bytearray(body)) == parse_images(listing)


def test_parse_images_body_tolerance() -> None:
    listing = [
        {"Id": sha("1"), "RepoTags": ["<none>:<none>"], "Size": -1, "VirtualSize": 500, "Created": 10},
        {"Id": sha("2"), "RepoTags": None, "Labels": {"Id": "a label called Id"}, "ParentId": None},
        {"Id": sha("3"), "RepoTags": ["b:1", "a:1", {"Id": "x"}], "RepoDigests": [{"Id": "y"}], "Size": "1"},
        {
            "Id": sha("4"),
            "RepoDigests": ["r@sha256:" + "0" * 64],
            "Created": {"Id": "z"},
            "Size": {"Id": "z"},
        },
        {"Id": sha("1"), "RepoTags": ["dup:1"]},
        {"Id": ""},
        {"Id": {"Id": sha("9")}},
        [{"Id": sha("8")}],
        "junk",
        None,
    ]
    body = json.dumps(listing).encode()
    assert parse_images(body) == parse_images(listing)
    images, skipped = parse_images(body)
    assert [i.id for i in images] == [sha("1"), sha("2"), sha("3"), sha("4")]
    assert skipped == 6
    assert images[2].tags == ("a:1", "b:1") and images[2].size == 1 and not images[2].has_digest
    assert images[3].has_digest and images[3].created == 0.0 and images[3].size == 0


@pytest.mark.parametrize("body", [b"{}", b'{"Id": "sha256:x"}', b"null", b"42", b'"text"'])
def test_parse_images_body_not_a_list(body: bytes) -> None:
    assert parse_images(body) == ([], 0)


def test_parse_images_body_not_json_raises_a_value_error() -> None:
    # A sample whose listing cannot be decoded fails, as requests' .json() made it fail.
    with pytest.raises(ValueError):
        parse_images(b"<html>oops</html>")


def test_registry_strings_are_shared() -> None:
    a = registry_of("".join(["ghcr.io", "/a:1"]))
    b = registry_of("".join(["GHCR.io", "/b:1"]))
    assert a == b == "ghcr.io" and a is b


# --- an image's registry ----------------------------------------------------------------


def listed(tags: list[str], digests: list[str] | None = None) -> RawImage:
    (img,), _ = parse_images([{"Id": sha("a"), "RepoTags": tags, "RepoDigests": digests}])
    return img


@pytest.mark.parametrize(
    ("tags", "digests", "registry"),
    [
        # A digest records a real pull or push: it outvotes every tag.
        (["app:v3", "123456789012.dkr.ecr.us-east-1.amazonaws.com/team/svc:2",
          "localhost:5000/mirror/svc:latest"],
         ["127.0.0.1:5123/mirror/svc@sha256:" + "1" * 64], "127.0.0.1:5123"),
        (["ghcr.io/acme/tool:1.0"], ["nginx@sha256:" + "1" * 64], "docker.io"),  # pulled from Docker Hub
        ([], ["quay.io/a/b@sha256:" + "1" * 64], "quay.io"),  # untagged, but pulled by digest
        # Several digests: the first registry in sorted order.
        (["x:1"], ["quay.io/a@sha256:" + "1" * 64, "ghcr.io/a@sha256:" + "2" * 64], "ghcr.io"),
        # A tag naming a registry host outvotes a local short name, whatever the sort order.
        (["app:v2", "ghcr.io/acme/tool:1.0"], None, "ghcr.io"),
        (["a:1", "localhost:5000/x:1", "ghcr.io/y:1"], [], "ghcr.io"),  # the first such tag, sorted
        (["app:v2", "library/nginx:1"], ["<none>@<none>"], "docker.io"),  # plain names only
        (["<none>:<none>"], ["<none>@<none>"], "none"),
        ([], None, "none"),
    ],
)  # fmt: skip
def test_image_registry(tags: list[str], digests: list[str] | None, registry: str) -> None:
    img = listed(tags, digests)
    assert image_registry(img) == registry
    (built,) = build_images([img], Sizes(unique={}, usage=None, unknown=0), Counter())
    assert built.registry == registry


def test_image_registry_without_a_digests_registry_reads_the_tags() -> None:
    # A RawImage made by hand (has_digest alone) falls back to its tags.
    img = RawImage(sha("a"), ("ghcr.io/a:1",), "", 0.0, 1, has_digest=True)
    assert image_registry(img) == "ghcr.io"
