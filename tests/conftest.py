"""Shared pytest options and fixtures.

`--regenerate-output` makes golden-file tests rewrite their expected files from the
current output instead of comparing (virtinst's switch); review the diff before
committing. Golden tests take the `regenerate` fixture. `libvirt_relaxng` gives
libvirt's RelaxNG schemas for validating produced XML (skipping outside CI when they are
missing); `relaxng` gives the domain schema or None.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from pathlib import Path

import pytest
from lxml import etree


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--regenerate-output",
        action="store_true",
        default=False,
        help="rewrite golden expected files from current output instead of comparing",
    )


@pytest.fixture
def regenerate(request: pytest.FixtureRequest) -> bool:
    """True when golden tests should rewrite their expected files."""
    return bool(request.config.getoption("--regenerate-output"))


LIBVIRT_SCHEMA_DIR = Path(os.environ.get("LIBVIRT_SCHEMA_DIR", "/usr/share/libvirt/schemas"))


@functools.cache
def _load_relaxng(name: str) -> etree.RelaxNG:
    return etree.RelaxNG(etree.parse(str(LIBVIRT_SCHEMA_DIR / f"{name}.rng")))


@pytest.fixture
def libvirt_relaxng() -> Callable[[str], etree.RelaxNG]:
    """Returns libvirt's RelaxNG schema for a root tag ("domain", "network").

    CI installs libvirt, so there a missing schema fails the test; elsewhere the test
    is skipped, saying why.
    """

    def get(tag: str) -> etree.RelaxNG:
        path = LIBVIRT_SCHEMA_DIR / f"{tag}.rng"
        if not path.is_file():
            if os.environ.get("CI"):
                pytest.fail(f"{path} is missing: CI must install libvirt's schemas")
            pytest.skip(f"{path} not found: install libvirt to run the RelaxNG checks")
        return _load_relaxng(tag)

    return get


@pytest.fixture(scope="session")
def relaxng() -> etree.RelaxNG | None:
    """libvirt's domain schema, or None where it is not installed (outside CI only: in CI
    a missing schema fails). For tests that check XML against it as one step among others."""
    if not (LIBVIRT_SCHEMA_DIR / "domain.rng").is_file():
        if os.environ.get("CI"):
            pytest.fail(f"{LIBVIRT_SCHEMA_DIR / 'domain.rng'} missing in CI: install "
                        "libvirt's schemas")
        return None
    return _load_relaxng("domain")


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory: pytest.TempPathFactory,
                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test gets its own spec cache and sync memo (never the user's ~/.cache)."""
    monkeypatch.setenv("VIRTCTL_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
