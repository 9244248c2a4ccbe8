"""The sync memo never hides a change: after no-op runs have recorded every object as in
sync, drift behind virtctl's back and spec edits are still found."""

from __future__ import annotations

import os
from pathlib import Path

from virtctl.cli.commands import main
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


def test_keys_are_the_same_in_every_process(tmp_path: Path) -> None:
    """Hash randomisation must not change a key: a second process finds the pairs the
    first one recorded (the memo does not grow) and compares nothing again."""
    import json
    import subprocess
    import sys

    specs = tmp_path / "specs"
    specs.mkdir()
    (specs / "web.yaml").write_text(SPEC)
    env = dict(os.environ, VIRTCTL_STATE_DIR=str(tmp_path / "state"),
               VIRTCTL_CONNECT="sim:///memo")
    repo = Path(__file__).resolve().parents[2]
    sizes = []
    for seed in ("1", "2", "3"):
        done = subprocess.run([sys.executable, "-m", "virtctl", "apply", "-f", str(specs)],
                              env=dict(env, PYTHONHASHSEED=seed, PYTHONPATH=str(repo)),
                              capture_output=True, text=True, check=False)
        assert done.returncode == 0, done.stderr
        files = list(Path(env["VIRTCTL_CACHE_DIR"]).glob("in-sync/*.json"))
        sizes.append(sum(len(json.loads(f.read_text())) for f in files))
    assert sizes[1] == sizes[2] == 1, sizes
