"""Apply sets: each object carries the name of the set that applied it (`--set`, else
named after the -f paths: the repository's root commit and the path in it, else the
absolute path), and --prune deletes only its own set's objects, pools and volumes too
(their records carry the set), or those of a set named with --prune-set. Pruning more
than five objects, or everything when the specs declare nothing, needs --prune-all,
which never widens the scope. On the sim and on qemu:///system (guests defined, not
started); the scenarios of issue 20, section A.
"""

from __future__ import annotations

import contextlib
import secrets
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.contract.support import PREFIX, purge_libvirt, require_connection, shared_dir
from tests.integration.crashkit import virtctl, virtctl_env
from virtctl.drivers import connect
from virtctl.reconciler.load.gitinfo import default_set, spec_set

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


def git(folder: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(folder), "-c", "user.name=virtctl test", "-c",
         "user.email=test@virtctl.invalid", "-c", "commit.gpgsign=false", *args],
        check=True, capture_output=True, text=True).stdout


def repository(folder: Path, *files: tuple[str, str]) -> Path:
    """A git repository at `folder` with `files` committed (its first commit)."""
    folder.mkdir(parents=True)
    git(folder, "init", "-q")
    for name, text in files:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text)
    git(folder, "add", ".")
    git(folder, "commit", "-q", "-m", "first")
    return folder


def root_commit(folder: Path) -> str:
    return git(folder, "rev-list", "--max-parents=0", "HEAD").strip()


def test_the_default_set_is_the_repository_and_the_path_the_same_from_every_clone(
        tmp_path: Path) -> None:
    """The set is the repository's root commit and the path in it: the same from a
    clone in a folder of any name, different for an unrelated repository in a folder
    of the same name (issue 20, A.3)."""
    one = repository(tmp_path / "one" / "infra", ("specs/prod/a.yaml", "# one\n"))
    root = root_commit(one)
    assert spec_set([str(one / "specs" / "prod")]) == f"git:{root}:specs/prod"
    assert spec_set([str(one / "specs" / "prod"), str(one)]) == \
        f"git:{root}:.,git:{root}:specs/prod"
    clone = tmp_path / "ci-workspace-1234"
    subprocess.run(["git", "clone", "-q", str(one), str(clone)], check=True)
    assert spec_set([str(clone / "specs" / "prod")]) == f"git:{root}:specs/prod"
    other = repository(tmp_path / "two" / "infra", ("specs/prod/a.yaml", "# two\n"))
    assert spec_set([str(other / "specs" / "prod")]) != spec_set([str(one / "specs" / "prod")])
    outside = tmp_path / "plain"
    outside.mkdir()
    found = default_set([str(outside)])
    assert found.name == str(outside.resolve()) and found.unstable == ()
    stdin = default_set(["-"])
    assert stdin.name == "stdin" and stdin.unstable  # --prune needs --set
    shallow = tmp_path / "shallow"
    subprocess.run(["git", "clone", "-q", "--depth", "1", f"file://{one}", str(shallow)],
                   check=True)
    found = default_set([str(shallow / "specs")])
    assert "shallow clone" in found.unstable[0]


def run_in(cwd: Path, state: Path, *args: str,
           stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """`virtctl ARGS` run from `cwd` (relative -f paths, as a person or a CI job types)."""
    return subprocess.run([sys.executable, "-m", "virtctl", *args], cwd=cwd,
                          capture_output=True, text=True, env=virtctl_env(state),
                          timeout=600, check=False, input=stdin if stdin is not None else "")


def test_two_unrelated_repositories_checked_out_as_infra_are_two_sets(
        host: tuple[str, str, Path], tmp_path: Path) -> None:
    """X's `apply --prune -f specs/` left Y's guest undefined when both repositories
    were checked out as infra/ (issue 20, A.3)."""
    uri, p, state = host
    x = repository(tmp_path / "team-x" / "infra", ("specs/guests.yaml",
                                                   guest(f"{p}x1") + guest(f"{p}x2")))
    y = repository(tmp_path / "team-y" / "infra", ("specs/guests.yaml", guest(f"{p}y1")))
    for repo in (x, y):
        done = run_in(repo, state, "-c", uri, "apply", "-f", "specs/")
        assert done.returncode == 0, done.stderr
    sets = managed(uri, state, p)
    assert sets[f"{p}x1"] == f"git:{root_commit(x)}:specs"
    assert sets[f"{p}y1"] == f"git:{root_commit(y)}:specs" != sets[f"{p}x1"]
    (x / "specs" / "guests.yaml").write_text(guest(f"{p}x1"))
    git(x, "commit", "-q", "-am", "x2 goes")
    diff = run_in(x, state, "-c", uri, "diff", "--prune", "-f", "specs/")
    assert diff.returncode == 2 and f"domain/{p}x2" in diff.stdout
    assert f"{p}y1" not in diff.stdout
    done = run_in(x, state, "-c", uri, "apply", "--prune", "-f", "specs/")
    assert done.returncode == 0, done.stderr
    assert sorted(managed(uri, state, p)) == [f"{p}x1", f"{p}y1"]
    # A clone of X in a folder of another name is still X's set: it prunes X's objects.
    clone = tmp_path / "ci" / "checkout"
    subprocess.run(["git", "clone", "-q", str(x), str(clone)], check=True)
    (clone / "specs" / "guests.yaml").write_text("")
    emptied = run_in(clone, state, "-c", uri, "apply", "--prune", "--prune-all", "-f",
                     "specs/")
    assert emptied.returncode == 0, emptied.stderr
    assert sorted(managed(uri, state, p)) == [f"{p}y1"]


def test_prune_from_stdin_needs_a_set(host: tuple[str, str, Path], tmp_path: Path) -> None:
    """Everything applied from `-f -` shared the set `stdin` (issue 20, A.3)."""
    uri, p, state = host
    first = run_in(tmp_path, state, "-c", uri, "apply", "-f", "-", stdin=guest(f"{p}s1"))
    assert first.returncode == 0, first.stderr  # without --prune, no set is needed
    second = run_in(tmp_path, state, "-c", uri, "apply", "-f", "-", stdin=guest(f"{p}s2"))
    assert second.returncode == 0, second.stderr
    for verb in ("apply", "diff"):
        refused = run_in(tmp_path, state, "-c", uri, verb, "--prune", "-f", "-",
                         stdin=guest(f"{p}s2"))
        assert refused.returncode == 1, refused.stdout
        assert "--prune needs --set NAME here" in refused.stderr
        assert "stdin" in refused.stderr
    assert sorted(managed(uri, state, p)) == [f"{p}s1", f"{p}s2"]  # nothing was deleted
    named = run_in(tmp_path, state, "-c", uri, "apply", "--set", "pipe", "-f", "-",
                   stdin=guest(f"{p}s3"))
    assert named.returncode == 0, named.stderr
    pruned = run_in(tmp_path, state, "-c", uri, "apply", "--set", "pipe", "--prune", "-f",
                    "-", stdin=guest(f"{p}s4"))
    assert pruned.returncode == 0, pruned.stderr
    # Only set 'pipe' was pruned (s3); s1 and s2, applied from stdin without a set, stay.
    assert managed(uri, state, p) == {f"{p}s1": "stdin", f"{p}s2": "stdin",
                                      f"{p}s4": "pipe"}


def test_a_shallow_clone_needs_a_set_to_prune(tmp_path: Path) -> None:
    """A shallow clone (a CI checkout of depth 1) lacks the root commit that names the
    set: --prune needs --set there, in apply, diff and watch alike."""
    state = tmp_path / "state"
    origin = repository(tmp_path / "origin", ("specs/g.yaml", guest(f"{PREFIX}sh")))
    shallow = tmp_path / "shallow"
    subprocess.run(["git", "clone", "-q", "--depth", "1", f"file://{origin}", str(shallow)],
                   check=True)
    for verb in ("apply", "diff", "watch"):
        refused = run_in(shallow, state, verb, "--prune", "-f", "specs")
        assert refused.returncode == 1, refused.stdout + refused.stderr
        assert "shallow clone" in refused.stderr and "--set NAME" in refused.stderr
    assert run_in(shallow, state, "apply", "--set", "ci", "--prune", "-f",
                  "specs").returncode == 0


@contextlib.contextmanager
def pool_dir(uri: str, prefix: str) -> Iterator[Path]:
    """A shared directory for the test's pools, whose pools (and guests) are removed
    before it is: an active pool over a removed directory would fail every other run's
    read of the host's storage meanwhile."""
    with shared_dir() as shared:
        try:
            yield shared
        finally:
            if not uri.startswith("sim"):
                purge_libvirt(uri, prefix=prefix)


def storage_specs(root: Path, folder: str, pool: str, target: Path | None,
                  *volumes: str) -> Path:
    """A folder declaring a dir pool (when `target` is given) and raw volumes in it with
    deletePolicy: delete."""
    docs = [textwrap.dedent(f"""\
        kind: StoragePool
        name: {pool}
        type: dir
        target: {{path: {target}, permissions: {{mode: "0755"}}}}
        """)] if target is not None else []
    docs += [textwrap.dedent(f"""\
        kind: Volume
        pool: {pool}
        name: {name}
        format: raw
        capacity: 1MiB
        deletePolicy: delete
        """) for name in volumes]
    path = root / folder
    path.mkdir(exist_ok=True)
    (path / "storage.yaml").write_text("---\n".join(docs))
    return path


def storage_of(uri: str, state: Path, prefix: str) -> tuple[set[str], set[str]]:
    """The pools and volumes ("POOL/NAME") with this test's prefix."""
    driver = connect(uri, env={"VIRTCTL_STATE_DIR": str(state)})
    try:
        found = driver.storage()
    finally:
        driver.close()
    return ({n for n in found.pools if n.startswith(prefix)},
            {k for k in found.volumes if k.startswith(prefix)})


def test_prune_of_another_set_leaves_its_pool_and_volumes(
        host: tuple[str, str, Path], tmp_path: Path) -> None:
    """Set A: a dir pool and a volume with deletePolicy: delete; set B: one guest.
    `apply --prune -f B/` deleted A's volume and undefined A's pool (issue 20, A.1)."""
    uri, p, state = host
    with pool_dir(uri, p) as shared:
        team_a = storage_specs(tmp_path, "A", f"{p}pool", shared / "images", "data.raw")
        team_b = folder(tmp_path, "B", f"{p}b1")
        for specs in (team_a, team_b):
            done = virtctl(state, "-c", uri, "apply", "-f", str(specs))
            assert done.returncode == 0, done.stdout + done.stderr
        before = storage_of(uri, state, p)
        assert before == ({f"{p}pool"}, {f"{p}pool/data.raw"})
        for flags in (("diff", "--prune"), ("apply", "--prune", "--dry-run"),
                      ("apply", "--prune"), ("apply", "--prune", "--prune-all")):
            run = virtctl(state, "-c", uri, *flags, "-f", str(team_b))
            assert run.returncode == 0, (flags, run.stdout, run.stderr)
            assert f"{p}pool" not in run.stdout, (flags, run.stdout)
            assert storage_of(uri, state, p) == before
        # Only naming set A reaches it.
        named = virtctl(state, "-c", uri, "diff", "--prune", "--prune-set", str(team_a),
                        "-f", str(team_b))
        assert named.returncode == 2 and f"volume/{p}pool/data.raw" in named.stdout
        own = virtctl(state, "-c", uri, "apply", "--prune", "-f", str(team_a))
        assert own.returncode == 0, own.stdout + own.stderr
        assert storage_of(uri, state, p) == before  # A declares both: nothing goes
        storage_specs(tmp_path, "A", f"{p}pool", shared / "images")  # the volume leaves A
        own = virtctl(state, "-c", uri, "apply", "--prune", "-f", str(team_a))
        assert own.returncode == 0, own.stdout + own.stderr
        assert storage_of(uri, state, p) == ({f"{p}pool"}, set())
        assert sorted(managed(uri, state, p)) == [f"{p}b1"]


NETWORKS_A = 8


def network(name: str, index: int) -> str:
    return textwrap.dedent(f"""\
        ---
        kind: Network
        name: {name}
        bridge: {{name: vsb{index}}}
        dns: {{enable: false}}
        ips:
          - {{address: 10.231.{index}.1, netmask: 255.255.255.0}}
        """)


def networks_of(state: Path, prefix: str) -> dict[str, str]:
    driver = connect("sim:///default", env={"VIRTCTL_STATE_DIR": str(state)})
    try:
        return {n: o.owner.apply_set for n, o in driver.snapshot().networks.items()
                if n.startswith(prefix) and o.owner is not None}
    finally:
        driver.close()


def test_following_the_refusals_advice_never_reaches_another_set(tmp_path: Path) -> None:
    """Set A has 8 networks, set B 1. With 7 of A's specs removed, apply refused and said
    "pass --prune-all to delete them"; doing so also deleted B's network (issue 20, A.2).
    Now --prune-all lifts the count limit only, within A; B needs --prune-set B."""
    state, p = tmp_path / "state", f"{PREFIX}n-"
    team_a, team_b = tmp_path / "a", tmp_path / "b"
    team_a.mkdir()
    team_b.mkdir()
    (team_a / "nets.yaml").write_text("".join(network(f"{p}a{i}", i) for i in range(NETWORKS_A)))
    (team_b / "nets.yaml").write_text(network(f"{p}b0", 100))
    for specs in (team_a, team_b):
        assert virtctl(state, "apply", "-f", str(specs)).returncode == 0
    (team_a / "nets.yaml").write_text(network(f"{p}a0", 0))
    refused = virtctl(state, "apply", "--prune", "-f", str(team_a))
    assert refused.returncode == 1
    said = refused.stderr
    assert f"refusing to prune 7 object(s) of set {str(team_a)!r}" in said
    assert "more than 5 objects would go" in said and f"{p}b0" not in said
    assert "--prune-all" in said and "no object of a set not named here is ever pruned" in said
    assert len(networks_of(state, p)) == NETWORKS_A + 1  # nothing went
    followed = virtctl(state, "apply", "--prune", "--prune-all", "-f", str(team_a))
    assert followed.returncode == 0, followed.stderr
    assert networks_of(state, p) == {f"{p}a0": str(team_a), f"{p}b0": str(team_b)}
    # An empty directory with --prune-all takes its own set's objects only.
    empty = tmp_path / "empty"
    empty.mkdir()
    wiped = virtctl(state, "apply", "--set", str(team_a), "--prune", "--prune-all", "-f",
                    str(empty))
    assert wiped.returncode == 0, wiped.stderr
    assert networks_of(state, p) == {f"{p}b0": str(team_b)}
    # Another set is reached only when named.
    named = virtctl(state, "apply", "--prune", "--prune-set", str(team_b), "-f", str(empty))
    assert named.returncode == 1 and "the specs declare nothing" in named.stderr
    assert f"set {str(team_b)!r} (--prune-set)" in named.stderr
    assert networks_of(state, p) == {f"{p}b0": str(team_b)}
    alone = virtctl(state, "apply", "--prune-set", str(team_b), "-f", str(empty))
    assert alone.returncode == 1 and "--prune-set needs --prune" in alone.stderr


def test_qemu_diff_prune_of_one_volume_leaves_another_sets_pool_volumes_and_seed(
        tmp_path: Path) -> None:
    """On qemu:///system, `diff --prune` of a one-volume spec planned to delete another
    set's pool, its volumes and a running guest's cidata ISO (issue 20, A.1)."""
    uri = "qemu:///system"
    require_connection(uri)
    p, state = f"{PREFIX}{secrets.token_hex(3)}-", tmp_path / "state"
    pool = f"{p}pool"
    try:
        with pool_dir(uri, p) as shared:
            team_a = storage_specs(tmp_path, "A", pool, shared / "images", "base.raw")
            with (team_a / "guest.yaml").open("w") as out:
                out.write(textwrap.dedent(f"""\
                    kind: Domain
                    name: {p}web
                    type: qemu
                    memory: 64MiB
                    os: {{type: hvm, arch: x86_64, machine: pc}}
                    cloudInit:
                      pool: {pool}
                      hostname: web
                      userData: {{users: [{{name: ops}}]}}
                    """))
            done = virtctl(state, "-c", uri, "apply", "-f", str(team_a))
            assert done.returncode == 0, done.stdout + done.stderr
            seed = f"{pool}/{p}web-cidata.iso"
            before = storage_of(uri, state, p)
            assert before == ({pool}, {f"{pool}/base.raw", seed})
            team_b = storage_specs(tmp_path, "B", pool, None, "b.raw")  # in A's pool
            diff = virtctl(state, "-c", uri, "diff", "--prune", "-f", str(team_b))
            assert diff.returncode == 2, diff.stdout + diff.stderr
            assert f"volume/{pool}/b.raw" in diff.stdout
            for theirs in (f"pool/{pool}", f"volume/{pool}/base.raw", f"volume/{seed}",
                           f"domain/{p}web"):
                assert theirs not in diff.stdout, diff.stdout
            done = virtctl(state, "-c", uri, "apply", "--prune", "--prune-all", "-f",
                           str(team_b))
            assert done.returncode == 0, done.stdout + done.stderr
            assert storage_of(uri, state, p) == ({pool}, {*before[1], f"{pool}/b.raw"})
            running = managed(uri, state, p)
            assert list(running) == [f"{p}web"]
            # A drops its pool and base volume: the volume goes, the pool stays, since it
            # holds B's volume (and the seed A's running guest uses).
            (team_a / "storage.yaml").write_text("")
            diff = virtctl(state, "-c", uri, "diff", "--prune", "-f", str(team_a))
            assert diff.returncode == 2, diff.stdout + diff.stderr
            assert f"volume/{pool}/base.raw" in diff.stdout
            assert f"pool/{pool}: not pruned" in diff.stdout + diff.stderr
            assert f"{pool}/b.raw" in diff.stdout  # named as the reason
            done = virtctl(state, "-c", uri, "apply", "--prune", "-f", str(team_a))
            assert done.returncode == 0, done.stdout + done.stderr
            assert storage_of(uri, state, p) == ({pool}, {seed, f"{pool}/b.raw"})
            # `delete -f` naming the seed (deletePolicy: delete) while A's guest runs
            # on it: kept, said why; the running definition is what libvirt reports.
            named = storage_specs(tmp_path, "C", pool, None, f"{p}web-cidata.iso")
            gone = virtctl(state, "-c", uri, "delete", "-f", str(named))
            assert gone.returncode == 0, gone.stdout + gone.stderr
            assert f"not deleted: running guest {p}web uses it" in gone.stdout + gone.stderr
            assert seed in storage_of(uri, state, p)[1]
    finally:
        purge_libvirt(uri, prefix=p)


def test_the_watchers_prune_leaves_another_sets_storage(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`virtctl watch --prune` of set B (one guest), beside set A's pool and volume with
    deletePolicy: delete, applied by `apply`: the watcher plans the same as apply."""
    import io
    import json
    import threading
    import time

    from virtctl.reconciler.plan.plan import Policy
    from virtctl.watch import run_watch

    state, p = tmp_path / "state", f"{PREFIX}w-"
    monkeypatch.setenv("VIRTCTL_STATE_DIR", str(state))
    monkeypatch.setenv("VIRTCTL_CACHE", "0")
    team_a = storage_specs(tmp_path, "A", f"{p}pool", tmp_path / "images", "data.raw")
    team_b = folder(tmp_path, "B", f"{p}b1")
    done = virtctl(state, "apply", "-f", str(team_a))
    assert done.returncode == 0, done.stdout + done.stderr
    before = storage_of("sim:///default", state, p)
    assert before == ({f"{p}pool"}, {f"{p}pool/data.raw"})
    stop, stream, codes = threading.Event(), io.StringIO(), []
    policy = Policy(prune=True, prune_all=True, apply_set=spec_set([str(team_b)]))
    thread = threading.Thread(target=lambda: codes.append(run_watch(
        [str(team_b)], uri="sim:///default", policy=policy, interval=0.3, log_format="json",
        metrics_port=None, metrics_address="127.0.0.1", stop=stop, stream=stream)))
    thread.start()
    try:
        deadline = time.monotonic() + 60
        while sum(json.loads(line).get("event") == "reconciled"
                  for line in stream.getvalue().splitlines()) < 3:
            assert time.monotonic() < deadline, stream.getvalue()
            time.sleep(0.05)
    finally:
        stop.set()
        thread.join(timeout=30)
    assert codes == [0], stream.getvalue()
    assert sorted(managed("sim:///default", state, p)) == [f"{p}b1"]
    assert storage_of("sim:///default", state, p) == before
