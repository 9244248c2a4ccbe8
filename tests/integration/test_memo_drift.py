"""The sync memo never hides a change: after no-op runs have recorded every object as in
sync, drift behind virtctl's back and spec edits are still found."""

from __future__ import annotations

import os
from pathlib import Path

from virtctl.cli import main
from virtctl.drivers import connect
from virtctl.model import Kind

SPEC = """\
kind: Domain
name: web
type: kvm
memory: 512MiB
os: {type: hvm, arch: x86_64}
"""


def run(*argv: str) -> int:
    from io import StringIO

    return main(list(argv), out=StringIO(), err=StringIO())


def test_drift_after_memoized_runs_is_found(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("VIRTCTL_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.delenv("VIRTCTL_CONNECT", raising=False)
    monkeypatch.delenv("LIBVIRT_DEFAULT_URI", raising=False)
    specs = tmp_path / "specs"
    specs.mkdir()
    (specs / "web.yaml").write_text(SPEC)
    assert run("apply", "-f", str(specs)) == 0
    assert run("diff", "-f", str(specs)) == 0  # records the pair as in sync
    memo = list(Path(os.environ["VIRTCTL_CACHE_DIR"]).glob("in-sync/*.json"))
    assert memo, "a no-op run should record the objects it found in sync"
    assert run("diff", "-f", str(specs)) == 0

    driver = connect("sim:///default")
    live = driver.snapshot().domains["web"]
    driver.define(Kind.DOMAIN, live.xml.replace("524288", "262144"))  # edited behind our back
    assert run("diff", "-f", str(specs)) == 2
    assert run("apply", "-f", str(specs)) == 0
    assert run("diff", "-f", str(specs)) == 0

    driver.destroy(Kind.DOMAIN, "web")  # stopped behind our back
    assert run("diff", "-f", str(specs)) == 2
    assert run("apply", "-f", str(specs)) == 0

    (specs / "web.yaml").write_text(SPEC.replace("512MiB", "1GiB"))  # the spec changes
    assert run("diff", "-f", str(specs)) == 2
