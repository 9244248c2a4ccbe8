"""A DomainSet with a volumeTemplate on the sim (issue 24): one qcow2 overlay per instance
on a base volume; labels on the pool and the volumes recorded in virtctl's storage
record (get -o wide shows them, -l filters get, export and --prune); scaling down
keeps an instance's overlay unless the template says deletePolicy: delete, and the
plan names the set for the removed guest and volume alike."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import yaml

from virtctl.drivers import connect
from virtctl.reconciler.plan.plan_storage import view
from virtctl.xmlutil import parse

REPO = Path(__file__).resolve().parents[2]
HOST = "sim:///vols"


def virtctl(state: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTCTL_CONNECT",
                                                            "LIBVIRT_DEFAULT_URI")}
    env.update(VIRTCTL_STATE_DIR=str(state), PYTHONPATH=str(REPO), VIRTCTL_CACHE="0")
    return subprocess.run([sys.executable, "-m", "virtctl", "-c", HOST, *args],
                          capture_output=True, text=True, env=env, timeout=300, check=False,
                          stdin=subprocess.DEVNULL)


def write(folder: Path, replicas: int, *, policy: str = "", scratch: bool = True) -> Path:
    folder.mkdir(exist_ok=True)
    text = textwrap.dedent(f"""\
        kind: StoragePool
        name: images
        type: dir
        target: {{path: {folder.parent / "images"}}}
        labels: {{tier: storage}}
        ---
        kind: Volume
        name: base.qcow2
        pool: images
        capacity: 1GiB
        format: qcow2
        labels: {{role: base}}
        ---
        kind: DomainSet
        name: web
        replicas: {replicas}
        pattern: "web-{{index}}"
        labels: {{role: web}}
        volumeTemplate: {{pool: images, backingVolume: base.qcow2, capacity: 2GiB{policy}}}
        template:
          type: kvm
          memory: 64MiB
          os: {{type: hvm, arch: x86_64}}
        """)
    if scratch:
        text += textwrap.dedent("""\
            ---
            kind: Volume
            name: scratch.raw
            pool: images
            capacity: 1MiB
            format: raw
            deletePolicy: delete
            labels: {role: scratch}
            """)
    (folder / "specs.yaml").write_text(text)
    return folder


def volumes(state: Path) -> dict[str, tuple[bool, str | None]]:
    """volume -> (managed by virtctl, its backing file)."""
    driver = connect(HOST, env={"VIRTCTL_STATE_DIR": str(state)})
    try:
        found = view(driver.storage())
        return {v.name: (found.volume_record(v) is not None,
                         parse(v.xml).findtext("backingStore/path"))
                for v in found.storage.volumes.values()}
    finally:
        driver.close()


def test_volume_template_overlays_labels_and_scale_down(tmp_path: Path) -> None:
    state = tmp_path / "state"
    folder = write(tmp_path / "specs", 3)
    first = virtctl(state, "apply", "-f", str(folder))
    assert first.returncode == 0, first.stderr
    assert "+ volume/images/web-2.qcow2" in first.stdout
    assert "[DomainSet web]" in first.stdout.split("+ volume/images/web-2.qcow2")[1] \
        .splitlines()[0]
    have = volumes(state)
    base = have["base.qcow2"]
    assert base[0] and base[1] is None
    for i in (1, 2, 3):  # an overlay per instance on the base volume's file
        managed, backing = have[f"web-{i}.qcow2"]
        assert managed and backing is not None and backing.endswith("/base.qcow2")
    driver = connect(HOST, env={"VIRTCTL_STATE_DIR": str(state)})
    disk = parse(driver.snapshot().domains["web-2"].xml).find("devices/disk/source")
    driver.close()
    assert disk is not None and disk.get("volume") == "web-2.qcow2"

    # Labels: recorded, shown, selected.
    wide = virtctl(state, "get", "volumes", "-o", "wide")
    rows = {line.split()[0]: line for line in wide.stdout.splitlines()[1:]}
    assert "domainset=web,role=web" in rows["web-1.qcow2"] and "role=base" in rows["base.qcow2"]
    pools = virtctl(state, "get", "pools", "-o", "wide")
    assert "tier=storage" in pools.stdout and "LABELS" in pools.stdout
    as_json = json.loads(virtctl(state, "get", "volumes", "-o", "json").stdout)
    assert {r["name"]: r["labels"] for r in as_json}["scratch.raw"] == "role=scratch"
    selected = virtctl(state, "get", "volumes", "-l", "role=web")
    assert sorted(line.split()[0] for line in selected.stdout.splitlines()[1:]) == [
        "web-1.qcow2", "web-2.qcow2", "web-3.qcow2"]
    none = virtctl(state, "get", "pools", "-l", "role=web")
    assert none.stdout.splitlines()[1:] == []
    exported = virtctl(state, "export", "-l", "role in (web,base)")
    docs = [d for d in yaml.safe_load_all(exported.stdout) if d]
    assert sorted((d["kind"], d["name"]) for d in docs) == [
        ("Domain", "web-1"), ("Domain", "web-2"), ("Domain", "web-3"),
        ("Volume", "base.qcow2"), ("Volume", "web-1.qcow2"), ("Volume", "web-2.qcow2"),
        ("Volume", "web-3.qcow2")]

    # Scale down: the guest goes, its overlay stays (retained, no longer managed); the
    # plan names the set for both removals.
    write(folder, 2)
    diff = virtctl(state, "diff", "--prune", "-f", str(folder))
    lines = {line.split()[1]: line for line in diff.stdout.splitlines()
             if line.startswith("- ")}
    assert "[DomainSet web]" in lines["domain/web-3"], diff.stdout
    assert "[DomainSet web]" in lines["volume/images/web-3.qcow2"], diff.stdout
    down = virtctl(state, "apply", "--prune", "-f", str(folder))
    assert down.returncode == 0, down.stderr
    have = volumes(state)
    assert have["web-3.qcow2"][0] is False and have["web-3.qcow2"][1] is not None
    assert have["web-2.qcow2"][0] is True

    # deletePolicy: delete in the template, recorded first; the next scale-down deletes.
    write(folder, 2, policy=", deletePolicy: delete")
    recorded = virtctl(state, "apply", "--prune", "-f", str(folder))
    assert recorded.returncode == 0, recorded.stderr
    assert sorted(volumes(state)) == ["base.qcow2", "scratch.raw", "web-1.qcow2",
                                      "web-2.qcow2", "web-3.qcow2"]
    write(folder, 1, policy=", deletePolicy: delete")
    gone = virtctl(state, "apply", "--prune", "-f", str(folder))
    assert gone.returncode == 0, gone.stderr
    have = volumes(state)
    assert "web-2.qcow2" not in have and "web-3.qcow2" in have  # retained earlier: kept


def test_prune_under_a_selector_reaches_volumes_by_their_recorded_labels(
        tmp_path: Path) -> None:
    state = tmp_path / "state"
    folder = write(tmp_path / "specs", 1)
    assert virtctl(state, "apply", "-f", str(folder)).returncode == 0
    write(folder, 1, scratch=False)  # scratch.raw dropped from the specs
    web = virtctl(state, "apply", "--prune", "-l", "role=web", "-f", str(folder))
    assert web.returncode == 0, web.stderr
    assert "scratch.raw" in volumes(state)  # not selected: not pruned
    scratch = virtctl(state, "apply", "--prune", "--prune-all", "-l", "role=scratch",
                      "-f", str(folder))
    assert scratch.returncode == 0, scratch.stderr
    assert "- volume/images/scratch.raw" in scratch.stdout
    have = volumes(state)
    assert "scratch.raw" not in have and {"base.qcow2", "web-1.qcow2"} <= set(have)
