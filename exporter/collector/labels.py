"""Label values: --metrics.hide-names' stand-ins, image labels, and text the exposition can encode."""

from __future__ import annotations

import hashlib
import re

from prometheus_client.samples import Sample

from exporter.imagesizes import split_reference
from exporter.model import Image

IMAGE_LABELS = ("image_id", "repository", "tag")
PUBLIC_REGISTRIES = ("docker.io", "none")  # registry labels that name no one


def hidden(name: str) -> str:
    """--metrics.hide-names: a stable stand-in for a name, 12 hex digits of its SHA-256.

    Ids (hex) keep their short form. A hash of a well-known public name can be guessed; the
    names it hides are the operator's own."""
    if re.fullmatch(r"(?:sha256:)?[0-9a-f]{12,64}", name):
        return name.split(":", 1)[-1][:12]
    return hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:12]


def shown(name: str, hide: bool) -> str:
    return hidden(name) if hide else name


def registry_label(registry: str, hide: bool) -> str:
    # A private registry's host can name its owner (an ECR account id, a company name).
    return hidden(registry) if hide and registry not in PUBLIC_REGISTRIES else registry


def reference_labels(image: Image, reference: str, hide: bool = False) -> list[str]:
    """image_id, repository, tag of one of the image's references."""
    repo, tag = split_reference(reference)
    return [image.short_id, shown(repo, hide), shown(tag, hide)]


def image_labels(image: Image, hide: bool = False) -> list[str]:
    """The labels of an image's per-image series: its first tag, or <none> when untagged."""
    if not image.tags:
        return [image.short_id, "<none>", "<none>"]
    return reference_labels(image, image.tags[0], hide)


def clean(value: str) -> str:
    """A label value the exposition can encode: names from disk or the engine may carry text
    that is not UTF-8 (surrogates); those characters become U+FFFD instead of failing every
    scrape."""
    try:
        value.encode("utf-8")
        return value
    except UnicodeEncodeError:
        return value.encode("utf-8", "surrogatepass").decode("utf-8", "replace")


def encodable(sample: Sample) -> Sample:
    labels = sample.labels
    if all(v.isascii() for v in labels.values()):  # the common case, without a copy
        return sample
    return sample._replace(labels={k: clean(v) for k, v in labels.items()})
