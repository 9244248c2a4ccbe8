"""A hostile host's text never reaches the terminal raw (issue 20 D): libvirt 9.0 takes a
domain name holding a right-to-left override, a zero-width space, DEL and a C1 control
(CSI, which some terminals act on like ESC [). `get` and its wide form print such a
name escaped; JSON and YAML keep the name itself, as escapes."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.contract.support import PREFIX, libvirt_module, purge_libvirt, require_connection
from tests.integration.crashkit import virtctl

QEMU = "qemu:///system"


@pytest.fixture
def hostile() -> Iterator[str]:
    require_connection(QEMU)
    name = f"{PREFIX}{secrets.token_hex(3)}\u202egnp.exe\u200b\x7f\x9b31m"
    conn = libvirt_module().open(QEMU)
    try:
        conn.defineXML(f"<domain type='qemu'><name>{name}</name><memory>32768</memory>"
                       "<os><type arch='x86_64' machine='pc'>hvm</type></os></domain>")
        yield name
    finally:
        conn.close()
        purge_libvirt(QEMU, [name])


def escaped(name: str) -> str:
    return (name.replace("\u202e", "\\u202e").replace("\u200b", "\\u200b")
            .replace("\x7f", "\\x7f").replace("\x9b", "\\x9b"))


@pytest.mark.parametrize("output", ["table", "wide"])
def test_get_prints_a_hostile_name_escaped(hostile: str, tmp_path: Path, output: str) -> None:
    result = virtctl(tmp_path / "state", "-c", QEMU, "get", "domains", "-o", output)
    assert result.returncode == 0, result.stderr
    assert escaped(hostile) in result.stdout
    assert result.stdout.replace("\n", "").isprintable()


@pytest.mark.parametrize("output", ["json", "yaml"])
def test_get_json_and_yaml_keep_the_name_as_escapes(hostile: str, tmp_path: Path,
                                                     output: str) -> None:
    result = virtctl(tmp_path / "state", "-c", QEMU, "get", "domains", "-o", output)
    assert result.returncode == 0, result.stderr
    assert result.stdout.replace("\n", "").isprintable()
    rows = json.loads(result.stdout) if output == "json" else yaml.safe_load(result.stdout)
    assert hostile in {row["name"] for row in rows}
