"""Apply sets: each object carries the name of the set that applied it (`--set`, else
named after the -f paths), and --prune deletes only its own set's objects. Pruning more
than five objects, or everything when the specs declare nothing, needs --prune-all.
On the sim and on qemu:///system (guests defined, not started).
"""

from __future__ import annotations

import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.contract.support import PREFIX, purge_libvirt, require_connection
from tests.integration.crashkit import virtctl
from virtctl.drivers import connect
from virtctl.gitinfo import spec_set

URIS = ["sim:///default", "qemu:///system"]


def guest(name: str) -> str:
    return (f"---\nkind: Domain\nname: {name}\ntype: qemu\nmemory: 32MiB\nstate: shutoff\n"
            "os: {type: hvm, arch: x86_64, machine: pc}\n")


@pytest.fixture(params=URIS)
def host(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, str, Path]]:
    uri = request.param
    prefix = f"{PREFIX}{secrets.token_hex(3)}-"
    if uri.startswith("qemu"):
        require_connection(uri)
    try:
        yield uri, prefix, tmp_path / "state"
    finally:
        if uri.startswith("qemu"):
            purge_libvirt(uri, prefix=prefix)


def managed(uri: str, state: Path, prefix: str) -> dict[str, str]:
    """name -> apply set, of the managed guests with this test's prefix."""
    driver = connect(uri, env={"VIRTCTL_STATE_DIR": str(state)})
    try:
        return {n: d.owner.apply_set for n, d in driver.snapshot().domains.items()
                if n.startswith(prefix) and d.owner is not None}
    finally:
        driver.close()


def folder(root: Path, name: str, *guests: str) -> Path:
    path = root / name
    path.mkdir(exist_ok=True)
    for old in path.glob("*.yaml"):
        old.unlink()
    (path / "guests.yaml").write_text("".join(guest(g) for g in guests))
    return path


def test_prune_with_two_sets_on_one_host_deletes_only_its_own(
        host: tuple[str, str, Path], tmp_path: Path) -> None:
    uri, p, state = host
    team_a = folder(tmp_path, "team-a", f"{p}a1", f"{p}a2")
    team_b = folder(tmp_path, "team-b", f"{p}b1")
    assert virtctl(state, "-c", uri, "apply", "-f", str(team_a)).returncode == 0
    assert virtctl(state, "-c", uri, "apply", "-f", str(team_b)).returncode == 0
    sets = managed(uri, state, p)
    assert sets == {f"{p}a1": str(team_a), f"{p}a2": str(team_a), f"{p}b1": str(team_b)}
    folder(tmp_path, "team-a", f"{p}a1")  # a2 leaves team a's specs
    diff = virtctl(state, "-c", uri, "diff", "--prune", "-f", str(team_a))
    assert diff.returncode == 2 and f"domain/{p}a2" in diff.stdout
    assert f"domain/{p}b1" not in diff.stdout  # another set's: not this run's to prune
    done = virtctl(state, "-c", uri, "apply", "--prune", "-f", str(team_a))
    assert done.returncode == 0, done.stderr
    assert sorted(managed(uri, state, p)) == [f"{p}a1", f"{p}b1"]


def test_an_empty_set_or_a_big_prune_needs_prune_all(
        host: tuple[str, str, Path], tmp_path: Path) -> None:
    uri, p, state = host
    many = folder(tmp_path, "many", *(f"{p}m{i}" for i in range(7)))
    assert virtctl(state, "-c", uri, "apply", "--set", "fleet", "-f",
                   str(many)).returncode == 0
    empty = tmp_path / "empty"
    empty.mkdir()
    refused = virtctl(state, "-c", uri, "apply", "--set", "fleet", "--prune", "-f", str(empty))
    assert refused.returncode == 1
    assert "refusing to prune 7 object(s) of set 'fleet': the specs declare nothing" \
        in refused.stderr
    folder(tmp_path, "many", f"{p}m0")
    refused = virtctl(state, "-c", uri, "apply", "--set", "fleet", "--prune", "-f", str(many))
    assert refused.returncode == 1 and "more than 5 objects would go" in refused.stderr
    assert len(managed(uri, state, p)) == 7  # nothing was deleted
    done = virtctl(state, "-c", uri, "apply", "--set", "fleet", "--prune", "--prune-all",
                   "-f", str(many))
    assert done.returncode == 0, done.stderr
    assert list(managed(uri, state, p)) == [f"{p}m0"]


def test_an_object_moves_to_the_set_that_applies_it_without_a_guest_visible_change(
        host: tuple[str, str, Path], tmp_path: Path) -> None:
    uri, p, state = host
    specs = folder(tmp_path, "specs", f"{p}x")
    assert virtctl(state, "-c", uri, "apply", "--set", "old", "-f", str(specs)).returncode == 0
    driver = connect(uri, env={"VIRTCTL_STATE_DIR": str(state)})
    try:
        before = driver.snapshot().domains[f"{p}x"].uuid
    finally:
        driver.close()
    moved = virtctl(state, "-c", uri, "apply", "--set", "new", "-f", str(specs))
    assert moved.returncode == 0, moved.stderr
    assert "move from set 'old' to set 'new'" in moved.stdout
    assert managed(uri, state, p) == {f"{p}x": "new"}
    again = virtctl(state, "-c", uri, "diff", "--set", "new", "-f", str(specs))
    assert again.returncode == 0, again.stdout
    driver = connect(uri, env={"VIRTCTL_STATE_DIR": str(state)})
    try:
        assert driver.snapshot().domains[f"{p}x"].uuid == before
    finally:
        driver.close()


def test_the_default_set_is_the_same_from_every_clone(tmp_path: Path) -> None:
    for clone in ("one", "two"):
        repo = tmp_path / clone / "infra"
        (repo / "specs" / "prod").mkdir(parents=True)
        subprocess.run(["git", "init", "-q", str(repo)], check=True)
        assert spec_set([str(repo / "specs" / "prod")]) == "infra:specs/prod"
        assert spec_set([str(repo / "specs" / "prod"), str(repo)]) == "infra:,infra:specs/prod"
    outside = tmp_path / "plain"
    outside.mkdir()
    assert spec_set([str(outside)]) == str(outside.resolve())
    assert spec_set(["-"]) == "stdin"
