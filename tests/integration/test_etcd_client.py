"""virtctl.coord.etcd against a real 3-member etcd cluster on loopback (etcdcluster.py):
put/get/range/delete, the create txn, leases (expiry, keepalive, revoke), watch
(events, resume, cancel), failover when a member is down or stopped (SIGSTOP)."""

from __future__ import annotations

import threading
import time

import pytest

from tests.integration.etcdcluster import EtcdCluster
from virtctl.coord.etcd import (
    EtcdClient,
    EtcdUnavailable,
    LeaseLost,
    compare,
    put_op,
    range_op,
)


def until(condition, timeout: float, step: float = 0.05) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(step)
    return bool(condition())


def test_put_get_range_delete(etcd_cluster: EtcdCluster) -> None:
    client = etcd_cluster.client()
    assert client.get("/t/a") is None
    rev = client.put("/t/a", b"one")
    client.put("/t/b", "two")
    client.put("/t0", b"outside")  # shares the text prefix "/t" but not "/t/"
    kv = client.get("/t/a")
    assert kv is not None and kv.value == b"one" and kv.mod_revision == rev
    assert kv.create_revision == rev and kv.version == 1
    got = client.range("/t/")
    assert [k.key for k in got.kvs] == ["/t/a", "/t/b"] and got.revision >= rev + 1
    assert client.delete("/t/", prefix=True) == 2
    assert client.range("/t/").kvs == () and client.get("/t0") is not None
    # Keys and values are bytes on the wire (base64): any UTF-8 key, any value.
    client.put("/t/é ü", bytes(range(256)))
    assert client.get("/t/é ü").value == bytes(range(256))  # type: ignore[union-attr]


def test_create_is_exclusive(etcd_cluster: EtcdCluster) -> None:
    client = etcd_cluster.client()
    created, holder, rev = client.create("/lock/x", b"first")
    assert created and holder is None
    created, holder, _ = client.create("/lock/x", b"second")
    assert not created and holder is not None and holder.value == b"first"
    assert holder.create_revision == rev
    # Many creators at once: exactly one wins.
    wins: list[int] = []

    def race(i: int) -> None:
        c = etcd_cluster.client()
        if c.create("/lock/race", str(i))[0]:
            wins.append(i)

    threads = [threading.Thread(target=race, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(wins) == 1
    assert client.get("/lock/race").text == str(wins[0])  # type: ignore[union-attr]
    # A general txn: compare on value.
    result = client.txn([compare("/lock/x", "VALUE", b"first")],
                        [put_op("/lock/x", b"third")], [range_op("/lock/x")])
    assert result.succeeded and client.get("/lock/x").value == b"third"  # type: ignore[union-attr]


def test_lease_expires_and_takes_its_keys(etcd_cluster: EtcdCluster) -> None:
    client = etcd_cluster.client()
    lease = client.lease_grant(2)
    assert lease.ttl == 2
    client.put("/leased", b"v", lease=lease.id)
    assert client.get("/leased").lease == lease.id  # type: ignore[union-attr]
    assert 0 < client.lease_ttl(lease.id) <= 2
    # Not kept alive: gone within the TTL (plus etcd's own checking delay).
    assert until(lambda: client.get("/leased") is None, timeout=10)
    assert client.lease_ttl(lease.id) == -1
    assert client.lease_keepalive(lease.id) == 0


def test_keeper_keeps_then_revokes(etcd_cluster: EtcdCluster) -> None:
    client = etcd_cluster.client()
    lease = client.lease_grant(2)
    client.put("/kept", b"v", lease=lease.id)
    keeper = client.keeper(lease)
    began = time.monotonic()
    while time.monotonic() - began < 5:  # more than twice the TTL
        keeper.check()
        assert client.get("/kept") is not None
        time.sleep(0.2)
    assert keeper.alive and keeper.until > time.monotonic()
    keeper.stop(revoke=True)
    assert client.get("/kept") is None  # revoked: the key went at once


def test_keeper_notices_a_revoked_lease(etcd_cluster: EtcdCluster) -> None:
    client = etcd_cluster.client()
    lease = client.lease_grant(3)
    lost: list[str] = []
    keeper = client.keeper(lease, on_lost=lost.append)
    client.lease_revoke(lease.id)  # someone else (an operator) ended it
    assert until(lambda: bool(lost), timeout=10)
    assert not keeper.alive
    with pytest.raises(LeaseLost, match="ended"):
        keeper.check()
    keeper.stop()


def test_keeper_loses_the_lease_without_quorum(etcd_cluster: EtcdCluster) -> None:
    client = etcd_cluster.client(timeout=1.0)
    lease = client.lease_grant(3)
    keeper = client.keeper(lease)
    keeper.check()
    etcd_cluster.kill(1)
    etcd_cluster.kill(2)
    began = time.monotonic()
    assert until(lambda: not keeper.alive, timeout=15)
    # Never later than the TTL after the last renewal sent (plus the checker's period).
    assert time.monotonic() - began <= 3 + 2
    with pytest.raises(LeaseLost):
        keeper.check()
    with pytest.raises(EtcdUnavailable):
        client.put("/nowhere", b"x")
    keeper.stop()


def test_failover_when_a_member_is_down_or_stopped(etcd_cluster: EtcdCluster) -> None:
    client = etcd_cluster.client(timeout=2.0)
    client.put("/f", b"0")
    etcd_cluster.kill(0)  # the first endpoint: refused connections
    client.put("/f", b"1")
    assert client.get("/f").value == b"1"  # type: ignore[union-attr]
    etcd_cluster.restart(0)
    fresh = etcd_cluster.client(timeout=2.0)
    etcd_cluster.pause(0)  # stopped: accepts, never answers -> the deadline, then the next
    began = time.monotonic()
    fresh.put("/f", b"2")
    assert time.monotonic() - began < 2.0 + 3.0
    assert fresh.get("/f").value == b"2"  # type: ignore[union-attr]
    etcd_cluster.resume(0)


def test_watch_events_resume_and_cancel(etcd_cluster: EtcdCluster) -> None:
    client = etcd_cluster.client()
    rev = client.put("/w/a", b"1")
    # From an old revision: the history comes first, in order.
    with client.watch("/w/", prefix=True, start_revision=rev) as watch:
        client.put("/w/b", b"2")
        client.delete("/w/a")
        client.put("/elsewhere", b"x")
        seen = []
        deadline = time.monotonic() + 10
        while len(seen) < 3 and time.monotonic() < deadline:
            seen += watch.next_events(1.0)
        assert [(e.type, e.kv.key) for e in seen] == [
            ("PUT", "/w/a"), ("PUT", "/w/b"), ("DELETE", "/w/a")]
        assert seen[1].kv.value == b"2"
        # A member dies under the stream: it reopens on another from the next revision.
        last = seen[-1].kv.mod_revision
        for i in range(3):
            etcd_cluster.kill(i)
            etcd_cluster.restart(i)
        client.put("/w/c", b"3")
        more = []
        deadline = time.monotonic() + 20
        while not more and time.monotonic() < deadline:
            more += watch.next_events(1.0)
        assert [(e.type, e.kv.key) for e in more] == [("PUT", "/w/c")]
        assert more[0].kv.mod_revision > last
    # Cancelled: iteration ends, and cancel returned promptly.
    watch2 = client.watch("/w/", prefix=True)
    assert watch2.connected.wait(10)
    ended = threading.Event()

    def consume() -> None:
        for _ in watch2:
            pass
        ended.set()

    thread = threading.Thread(target=consume)
    thread.start()
    watch2.cancel()
    assert ended.wait(5)
    thread.join()


def test_auth_token(etcd_cluster: EtcdCluster) -> None:
    from virtctl.coord.etcd import Credentials, EtcdError

    admin = etcd_cluster.client()
    admin.call("/v3/auth/user/add", {"name": "root", "password": "r00t-s3cret"})
    admin.call("/v3/auth/user/grant", {"user": "root", "role": "root"})
    admin.call("/v3/auth/enable", {})
    anonymous = etcd_cluster.client()
    with pytest.raises(EtcdError) as refused:
        anonymous.put("/a", b"x")
    assert "r00t" not in str(refused.value)
    user = etcd_cluster.client(credentials=Credentials("root", "r00t-s3cret"))
    user.put("/a", b"x")
    assert user.get("/a").value == b"x"  # type: ignore[union-attr]
    # The token is the cluster's: after failover another member takes it (or a new one).
    etcd_cluster.kill(user._current)
    user.put("/a", b"x2")
    assert user.get("/a").value == b"x2"  # type: ignore[union-attr]
    with user.watch("/a") as watch:
        assert watch.connected.wait(10)
        user.put("/a", b"y")
        events = watch.next_events(10)
        assert [e.kv.value for e in events] == [b"y"]
    wrong = EtcdClient(etcd_cluster.endpoints, credentials=Credentials("root", "wrong-pw"))
    with pytest.raises(EtcdError) as bad:
        wrong.get("/a")
    assert "wrong-pw" not in str(bad.value) and "root" in str(bad.value)
    assert "wrong-pw" not in repr(wrong.__dict__)


def test_a_connection_closed_while_idle_is_reopened_on_the_same_member(
        etcd_cluster: EtcdCluster) -> None:
    client = etcd_cluster.client()
    client.put("/idle", b"0")
    assert client._current == 0
    etcd_cluster.restart(0)  # every kept-alive connection to it is gone
    client.put("/idle", b"1")
    assert client._current == 0  # not taken for a failed member: one retry, new connection
    assert client.get("/idle").value == b"1"  # type: ignore[union-attr]
