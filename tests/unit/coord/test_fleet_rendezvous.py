"""Rendezvous hashing (virtctl/coord/rendezvous.py): stable, balanced, minimal moves."""

from __future__ import annotations

from virtctl.coord.rendezvous import assign, owner, shares, weight

HOSTS = [f"sim:///fleet-{i:03d}" for i in range(600)]


def test_weight_is_stable_and_depends_on_both():
    assert weight("m1", "h") == weight("m1", "h")
    assert weight("m1", "h") != weight("m2", "h")
    assert weight("m1", "h") != weight("m1", "h2")
    # Pinned: the same on every machine and Python version (sha256, not hash()).
    assert weight("m1", "sim:///fleet-000") == int.from_bytes(
        __import__("hashlib").sha256(b"m1\x00sim:///fleet-000").digest()[:8], "big")


def test_every_member_agrees_whatever_the_order():
    members = ["m3", "m1", "m2"]
    assert assign(HOSTS, members) == assign(HOSTS, list(reversed(members)))
    assert owner("x", []) is None
    assert assign(HOSTS, []) == {}


def test_shares_are_balanced():
    counts = shares(assign(HOSTS, ["m1", "m2", "m3"]))
    assert sum(counts.values()) == len(HOSTS)
    for count in counts.values():  # 200 each expected; 4 sigma is about +-45
        assert 150 <= count <= 250, counts


def test_a_joining_member_takes_its_share_from_the_others_only():
    before = assign(HOSTS, ["m1", "m2", "m3"])
    after = assign(HOSTS, ["m1", "m2", "m3", "m4"])
    moved = {h for h in HOSTS if before[h] != after[h]}
    assert all(after[h] == "m4" for h in moved)  # none moves between old members
    assert 110 <= len(moved) <= 190, len(moved)  # about 1/4 of 600


def test_a_leaving_members_hosts_spread_over_the_rest():
    before = assign(HOSTS, ["m1", "m2", "m3", "m4"])
    after = assign(HOSTS, ["m1", "m2", "m3"])
    for host in HOSTS:
        if before[host] != "m4":
            assert after[host] == before[host]  # the others keep theirs
    orphans = [h for h in HOSTS if before[h] == "m4"]
    taken = shares({h: after[h] for h in orphans})
    assert set(taken) == {"m1", "m2", "m3"}
    assert min(taken.values()) >= len(orphans) // 6, taken  # no one neighbour gets them all
