"""Tests for neurobias.sources: the pinned download sources (as neurobias.data.download re-exports them)."""

import re

from neurobias.data import download


def test_sources_are_pinned():
    for name in ("cifar10", "cifar100", "tiny_imagenet"):
        assert re.fullmatch(r"[0-9a-f]{32}", download.SOURCES[name]["md5"])
    assert download.SOURCES["cadena"]["sha256"] is None  # to be pinned after verification
