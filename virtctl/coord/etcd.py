"""A small etcd v3 client over etcd's own JSON gateway (HTTP/1.1), standard library only.

Why not a gRPC client: the `etcd3` package on PyPI has had no release since 2020 and
pins old protobuf/grpcio; the gateway (`/v3/kv/range`, `/v3/kv/put`, `/v3/kv/txn`,
`/v3/lease/*`, `/v3/watch`, `/v3/auth/authenticate`) is part of every etcd server since
3.3, stable in 3.4+, and needs only http.client, ssl, json and base64 (docs/fleet.md).

    client = EtcdClient(["127.0.0.1:2379", "127.0.0.1:22379"])
    client.put("/virtctl/x", b"1")
    kv = client.get("/virtctl/x")            # KeyValue or None
    lease = client.lease_grant(15)
    created, holder, rev = client.create("/virtctl/lock", b"me", lease=lease.id)
    with client.watch("/virtctl/", prefix=True, start_revision=rev + 1) as events:
        for event in events: ...               # Event(type, kv); events.cancel() ends it

Every request has a deadline (`timeout`, per request); a member that refuses the
connection, times out, or answers "unavailable" (no leader, no quorum) is left for the
next endpoint, and the client stays on the one that answered. Keys are text (UTF-8),
values bytes. Errors are `EtcdError` (`EtcdUnavailable` when no endpoint answered);
their messages name endpoints and etcd's own words, never credentials.

Thread safety: one client may be shared by threads (each thread keeps its own HTTP
connections); a `Watch` and a `LeaseKeeper` each run one thread of their own.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import queue
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..errors import ErrorCode, ErrorDomain, VirtctlError

DEFAULT_TIMEOUT = 5.0  # seconds per request (an etcd write normally takes milliseconds)

# gRPC status codes etcd's gateway returns in {"code": N}
_UNAVAILABLE = 14
_DEADLINE = 4
_UNAUTHENTICATED = 16
_INVALID_AUTH = ("invalid auth token", "auth token is not provided")


class EtcdError(VirtctlError):
    """etcd refused a request, or no endpoint answered it."""

    default_code = ErrorCode.OPERATION_FAILED
    default_domain = ErrorDomain.COORDINATION


class EtcdUnavailable(EtcdError):
    """No endpoint answered within the deadline (down, partitioned, or without quorum)."""

    default_code = ErrorCode.CONNECTION


class WatchCompacted(EtcdError):
    """A watch's start revision was compacted away: read again, then watch from there."""


@dataclass(frozen=True, slots=True)
class KeyValue:
    key: str
    value: bytes
    create_revision: int
    mod_revision: int
    version: int
    lease: int = 0

    @property
    def text(self) -> str:
        return self.value.decode("utf-8", "replace")


@dataclass(frozen=True, slots=True)
class Range:
    kvs: tuple[KeyValue, ...]
    revision: int  # the store's revision when read (watch from revision + 1)
    more: bool = False
    count: int = 0


@dataclass(frozen=True, slots=True)
class TxnResult:
    succeeded: bool
    revision: int
    responses: tuple[dict[str, Any], ...]  # etcd's own, per op ("response_range": ...)

    def kvs(self, index: int = 0) -> tuple[KeyValue, ...]:
        """The KeyValues of the range op at `index` in the branch that ran."""
        if index >= len(self.responses):
            return ()
        got = self.responses[index].get("response_range") or {}
        return tuple(_kv(item) for item in got.get("kvs", ()))


@dataclass(frozen=True, slots=True)
class Lease:
    id: int
    ttl: int  # seconds granted
    granted_at: float  # time.monotonic() when the grant was sent: alive at most until +ttl


@dataclass(frozen=True, slots=True)
class Event:
    type: str  # "PUT" or "DELETE"
    kv: KeyValue  # for a DELETE: key and mod_revision (the deletion's), value empty


@dataclass(frozen=True, slots=True)
class Credentials:
    """etcd's user and password (auth enabled). The password is never shown."""

    user: str
    password: str = field(repr=False)

    def __repr__(self) -> str:
        return f"Credentials(user={self.user!r}, password=<hidden>)"


def _b64(text: str | bytes) -> str:
    data = text.encode() if isinstance(text, str) else text
    return base64.b64encode(data).decode("ascii")


def _unb64(text: str | None) -> bytes:
    return base64.b64decode(text or "")


def prefix_end(prefix: str | bytes) -> bytes:
    """The range end that makes [prefix, end) every key starting with `prefix`."""
    data = bytearray(prefix.encode() if isinstance(prefix, str) else prefix)
    while data:
        if data[-1] < 0xFF:
            data[-1] += 1
            return bytes(data)
        data.pop()
    return b"\0"  # every key


def _kv(doc: dict[str, Any]) -> KeyValue:
    return KeyValue(
        key=_unb64(doc.get("key")).decode("utf-8", "replace"),
        value=_unb64(doc.get("value")),
        create_revision=int(doc.get("create_revision", 0)),
        mod_revision=int(doc.get("mod_revision", 0)),
        version=int(doc.get("version", 0)),
        lease=int(doc.get("lease", 0)),
    )


def _revision(doc: dict[str, Any]) -> int:
    return int((doc.get("header") or {}).get("revision", 0))


# Ops and comparisons for `txn` (etcd's JSON field names).

def put_op(key: str, value: bytes | str, *, lease: int = 0) -> dict[str, Any]:
    body: dict[str, Any] = {"key": _b64(key), "value": _b64(value)}
    if lease:
        body["lease"] = str(lease)
    return {"request_put": body}


def range_op(key: str, *, prefix: bool = False) -> dict[str, Any]:
    body = {"key": _b64(key)}
    if prefix:
        body["range_end"] = _b64(prefix_end(key))
    return {"request_range": body}


def delete_op(key: str, *, prefix: bool = False) -> dict[str, Any]:
    body = {"key": _b64(key)}
    if prefix:
        body["range_end"] = _b64(prefix_end(key))
    return {"request_delete_range": body}


def compare(key: str, target: str, value: int | bytes | str,
            result: str = "EQUAL") -> dict[str, Any]:
    """`key`'s CREATE/MOD/VERSION revision, VALUE or LEASE compared (EQUAL, GREATER,
    LESS, NOT_EQUAL) with `value`: compare("k", "CREATE", 0) is "k does not exist"."""
    fields = {"CREATE": "create_revision", "MOD": "mod_revision", "VERSION": "version",
              "VALUE": "value", "LEASE": "lease"}
    wanted: Any = (_b64(value) if target == "VALUE" else str(int(value)))  # type: ignore[arg-type]
    return {"key": _b64(key), "target": target, "result": result, fields[target]: wanted}


class EtcdClient:
    def __init__(self, endpoints: Sequence[str], *, tls: ssl.SSLContext | None = None,
                 credentials: Credentials | None = None,
                 timeout: float = DEFAULT_TIMEOUT) -> None:
        """`endpoints`: "host:port" each (IPv6 as "[::1]:2379"); `tls`: the context for
        https (None: plain http); `credentials`: etcd's auth, a token is asked for on
        the first request and again when etcd says it expired."""
        if not endpoints:
            raise ValueError("no etcd endpoint given")
        self.endpoints = tuple(endpoints)
        self.tls = tls
        self.timeout = timeout
        self._credentials = credentials
        self._token: str | None = None
        self._token_lock = threading.Lock()
        self._current = 0  # the endpoint that answered last
        self._local = threading.local()

    def __repr__(self) -> str:
        return f"EtcdClient({list(self.endpoints)!r}, tls={self.tls is not None})"

    # --- key-value --------------------------------------------------------------

    def get(self, key: str) -> KeyValue | None:
        kvs = self.range(key, prefix=False).kvs
        return kvs[0] if kvs else None

    def range(self, key: str, *, prefix: bool = True, limit: int = 0, revision: int = 0,
              keys_only: bool = False) -> Range:
        """Every key starting with `key` (prefix=False: just `key`), sorted by key."""
        body: dict[str, Any] = {"key": _b64(key)}
        if prefix:
            body["range_end"] = _b64(prefix_end(key))
        if limit:
            body["limit"] = str(limit)
        if revision:
            body["revision"] = str(revision)
        if keys_only:
            body["keys_only"] = True
        doc = self.call("/v3/kv/range", body)
        return Range(kvs=tuple(_kv(item) for item in doc.get("kvs", ())),
                     revision=_revision(doc), more=bool(doc.get("more")),
                     count=int(doc.get("count", 0)))

    def put(self, key: str, value: bytes | str, *, lease: int = 0) -> int:
        """Store `value` at `key` (under `lease`, deleted when it ends); the revision."""
        return _revision(self.call("/v3/kv/put", put_op(key, value, lease=lease)["request_put"]))

    def delete(self, key: str, *, prefix: bool = False) -> int:
        """Delete `key` (prefix=True: every key starting with it); how many were."""
        return int(self.call("/v3/kv/deleterange",
                             delete_op(key, prefix=prefix)["request_delete_range"])
                   .get("deleted", 0))

    def txn(self, compares: Sequence[dict[str, Any]], success: Sequence[dict[str, Any]],
            failure: Sequence[dict[str, Any]] = ()) -> TxnResult:
        """If every comparison holds, the `success` ops, else the `failure` ops, atomically."""
        doc = self.call("/v3/kv/txn", {"compare": list(compares), "success": list(success),
                                       "failure": list(failure)})
        return TxnResult(succeeded=bool(doc.get("succeeded")), revision=_revision(doc),
                         responses=tuple(doc.get("responses", ())))

    def create(self, key: str, value: bytes | str, *, lease: int = 0) -> tuple[
            bool, KeyValue | None, int]:
        """Put `key` only if it does not exist (create_revision == 0), in one txn:
        (True, None, revision) if created, else (False, the existing key, revision)."""
        result = self.txn([compare(key, "CREATE", 0)], [put_op(key, value, lease=lease)],
                          [range_op(key)])
        if result.succeeded:
            return True, None, result.revision
        kvs = result.kvs()
        return False, (kvs[0] if kvs else None), result.revision

    # --- leases -----------------------------------------------------------------

    def lease_grant(self, ttl: int) -> Lease:
        sent = time.monotonic()
        doc = self.call("/v3/lease/grant", {"TTL": str(int(ttl))})
        if doc.get("error"):
            raise EtcdError(f"etcd refused a lease: {doc['error']}")
        return Lease(id=int(doc["ID"]), ttl=int(doc.get("TTL", ttl)), granted_at=sent)

    def lease_keepalive(self, lease: int, *, timeout: float | None = None) -> int:
        """Renew `lease`; the TTL granted again (0: the lease is gone)."""
        doc = self.call("/v3/lease/keepalive", {"ID": str(lease)}, timeout=timeout)
        return int((doc.get("result") or doc).get("TTL", 0))

    def lease_revoke(self, lease: int, *, timeout: float | None = None) -> None:
        """End `lease` now: its keys are deleted. A lease already gone is no error."""
        try:
            self.call("/v3/lease/revoke", {"ID": str(lease)}, timeout=timeout)
        except EtcdError as exc:
            if "lease not found" not in exc.message:
                raise

    def lease_ttl(self, lease: int) -> int:
        """Seconds `lease` has left (-1: it is gone)."""
        doc = self.call("/v3/lease/timetolive", {"ID": str(lease)})
        return int(doc.get("TTL", -1))

    def keeper(self, lease: Lease, *, on_lost: Callable[[str], None] | None = None,
               ) -> LeaseKeeper:
        """A started LeaseKeeper for `lease`."""
        keeper = LeaseKeeper(self, lease, on_lost=on_lost)
        keeper.start()
        return keeper

    # --- watch ------------------------------------------------------------------

    def watch(self, key: str, *, prefix: bool = False, start_revision: int = 0) -> Watch:
        """Events on `key` (or every key under it) from `start_revision` (0: from
        now), as an iterator; `cancel()` (or leaving its `with` block) ends it. A
        broken stream is opened again on the next endpoint from the revision after
        the last event seen, so no event is lost or repeated."""
        watch = Watch(self, key, prefix=prefix, start_revision=start_revision)
        watch.start()
        return watch

    # --- the wire ---------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """The answering member's status (version, leader, raft term)."""
        return self.call("/v3/maintenance/status", {})

    def call(self, path: str, body: dict[str, Any], *,
             timeout: float | None = None) -> dict[str, Any]:
        """POST `body` to `path` on the first endpoint that answers; its JSON reply."""
        deadline = timeout if timeout is not None else self.timeout
        failures: list[str] = []
        count = len(self.endpoints)
        start = self._current
        for step in range(count):
            index = (start + step) % count
            try:
                doc = self._authed(index, path, body, deadline)
            except _Retry as exc:
                failures.append(f"{self.endpoints[index]}: {exc}")
                continue
            self._current = index
            return doc
        raise EtcdUnavailable("no etcd endpoint answered (" + "; ".join(failures) + ")")

    def _authed(self, index: int, path: str, body: dict[str, Any],
                deadline: float) -> dict[str, Any]:
        for attempt in (1, 2):
            token = self._auth_token(index, deadline) if self._credentials else None
            status, doc = self._post(index, path, body, deadline, token)
            if status == 200 and "error" not in doc:
                return doc
            message = str(doc.get("message") or doc.get("error") or f"HTTP {status}")
            code = doc.get("code")
            if self._credentials and attempt == 1 and (
                    code == _UNAUTHENTICATED or any(s in message for s in _INVALID_AUTH)):
                with self._token_lock:
                    if self._token == token:
                        self._token = None  # expired: ask again once
                continue
            if code in (_UNAVAILABLE, _DEADLINE) or status in (502, 503, 504):
                raise _Retry(message)
            raise EtcdError(f"etcd refused {path}: {message}")
        raise EtcdError(f"etcd refused {path}: authentication failed")

    def _auth_token(self, index: int, deadline: float) -> str:
        with self._token_lock:
            if self._token is not None:
                return self._token
        assert self._credentials is not None
        status, doc = self._post(index, "/v3/auth/authenticate",
                                 {"name": self._credentials.user,
                                  "password": self._credentials.password}, deadline, None)
        if status != 200 or "token" not in doc:
            message = str(doc.get("message") or doc.get("error") or f"HTTP {status}")
            if doc.get("code") in (_UNAVAILABLE, _DEADLINE) or status in (502, 503, 504):
                raise _Retry(message)
            # etcd's words ("authentication failed, invalid user ID or password") name
            # no secret; the user is named so a wrong one is found.
            raise EtcdError(f"etcd refused user {self._credentials.user!r}: {message}",
                            code=ErrorCode.OPERATION_INVALID)
        with self._token_lock:
            self._token = str(doc["token"])
            return self._token

    def _post(self, index: int, path: str, body: dict[str, Any], deadline: float,
              token: str | None) -> tuple[int, dict[str, Any]]:
        data = json.dumps(body).encode()
        headers = {"Content-Type": "application/json"}
        if token:
            headers["Authorization"] = token
        for attempt in (1, 2):
            conn = self._connection(index, deadline)
            reused = conn.sock is not None
            try:
                conn.request("POST", path, body=data, headers=headers)
                response = conn.getresponse()
                raw = response.read()
                break
            except (OSError, http.client.HTTPException) as exc:
                self._drop(index)
                # A kept-alive connection the server closed while idle: once more on a
                # new one (not after a timeout: the member may be hung, try the next).
                if attempt == 1 and reused and isinstance(exc, (
                        ConnectionResetError, BrokenPipeError,
                        http.client.RemoteDisconnected)):
                    continue
                raise _Retry(_why(exc)) from None
        try:
            doc = json.loads(raw or b"{}")
        except ValueError:
            doc = {"error": f"not JSON (HTTP {response.status})"}
        if not isinstance(doc, dict):
            doc = {"error": f"unexpected answer (HTTP {response.status})"}
        return response.status, doc

    def _connection(self, index: int, timeout: float) -> http.client.HTTPConnection:
        conns: dict[int, http.client.HTTPConnection] = self._local.__dict__.setdefault(
            "conns", {})
        conn = conns.get(index)
        if conn is None:
            conn = self.open(index, timeout)
            conns[index] = conn
        conn.timeout = timeout
        if conn.sock is not None:
            conn.sock.settimeout(timeout)
        return conn

    def open(self, index: int, timeout: float | None) -> http.client.HTTPConnection:
        """A new connection to endpoint `index` (not yet connected)."""
        host, port = _split(self.endpoints[index])
        if self.tls is not None:
            return http.client.HTTPSConnection(host, port, timeout=timeout, context=self.tls)
        return http.client.HTTPConnection(host, port, timeout=timeout)

    def _drop(self, index: int) -> None:
        conns = self._local.__dict__.get("conns", {})
        conn = conns.pop(index, None)
        if conn is not None:
            conn.close()

    def close(self) -> None:
        """Close this thread's connections (others close with their threads)."""
        for index in list(self._local.__dict__.get("conns", {})):
            self._drop(index)


class _Retry(Exception):
    """This endpoint did not answer usefully: try the next one."""


def _why(exc: BaseException) -> str:
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return "timed out"
    if isinstance(exc, ssl.SSLError):
        return f"TLS: {exc.reason or exc}"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return type(exc).__name__ + (f": {exc}" if str(exc) else "")


def _split(endpoint: str) -> tuple[str, int]:
    host, sep, port = endpoint.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise ValueError(f"an etcd endpoint is host:port, not {endpoint!r}")
    return host.strip("[]"), int(port)


class LeaseLost(EtcdError):
    """The lease that holds a lock ended or could not be renewed in time."""

    default_code = ErrorCode.CONNECTION


class LeaseKeeper:
    """Keeps a lease alive from a thread of its own, renewing it every third of its
    TTL, and knows until when it is certainly alive: a renewal sent at T that etcd
    answered with TTL n keeps it to T + n at least (the clocks are monotonic, the time
    measured from the send, so a slow answer only shortens it). Past that without a
    renewal, or when etcd answers that the lease is gone, the lease is lost: `alive`
    turns false, `check()` raises LeaseLost, `on_lost(reason)` is called once, and the
    keeper stops."""

    def __init__(self, client: EtcdClient, lease: Lease, *,
                 on_lost: Callable[[str], None] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.client = client
        self.lease = lease
        self.on_lost = on_lost
        self._clock = clock
        self._until = lease.granted_at + lease.ttl
        self._lost = ""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"lease-{lease.id:x}",
                                        daemon=True)
        self.renew_failures = 0
        self._failure = ""  # why the last renewal failed ("" once one succeeds)

    def start(self) -> None:
        self._thread.start()

    @property
    def until(self) -> float:
        """The monotonic time up to which the lease is known alive."""
        return self._until

    @property
    def alive(self) -> bool:
        return not self._lost and self._clock() < self._until

    def check(self, margin: float = 0.0) -> None:
        """Raise LeaseLost unless the lease is known alive for `margin` more seconds."""
        if self._lost:
            raise LeaseLost(self._lost)
        left = self._until - self._clock()
        if left <= margin:
            self._lose(f"the lease was not renewed in time ({self._failure or 'no answer'})")
            raise LeaseLost(self._lost)

    def _lose(self, reason: str) -> None:
        if self._lost:
            return
        self._lost = reason
        self._stop.set()
        if self.on_lost is not None:
            with contextlib.suppress(Exception):
                self.on_lost(reason)

    def _run(self) -> None:
        period = max(self.lease.ttl / 3.0, 0.2)
        while not self._stop.wait(period if not self._failure else min(period, 1.0)):
            if self._clock() >= self._until:
                self._lose(f"etcd did not renew the lease for {self.lease.ttl} s "
                           f"({self._failure or 'no answer'})")
                return
            sent = self._clock()
            # A renewal answered after the lease could have ended proves nothing more.
            budget = max(min(self.client.timeout, self._until - sent), 0.1)
            try:
                ttl = self.client.lease_keepalive(self.lease.id, timeout=budget)
            except EtcdError as exc:
                self.renew_failures += 1
                self._failure = exc.message
                continue
            if ttl <= 0:
                self._lose("etcd says the lease has ended (expired or revoked)")
                return
            self._failure = ""
            self._until = max(self._until, sent + ttl)

    def stop(self, *, revoke: bool = True) -> None:
        """Stop renewing; `revoke` ends the lease now (its keys go at once), else it
        runs out by itself within its TTL."""
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=self.client.timeout * len(self.client.endpoints) + 1)
        if revoke and not self._lost:
            # Bounded: if etcd does not answer, the lease runs out by itself.
            with contextlib.suppress(EtcdError):
                self.client.lease_revoke(self.lease.id, timeout=min(self.client.timeout, 2.0))
        self._lost = self._lost or "stopped"


class Watch:
    """Events from one etcd watch stream, read by a thread of its own (see
    EtcdClient.watch). Iterate for events (blocks); `next_events(timeout)` waits at
    most `timeout` seconds and returns [] if none came; `cancel()` ends it from any
    thread. While no endpoint answers it keeps trying; `connected` says whether a
    stream is open now."""

    def __init__(self, client: EtcdClient, key: str, *, prefix: bool,
                 start_revision: int) -> None:
        self.client = client
        self.key = key
        self.prefix = prefix
        self.next_revision = start_revision  # 0: from now
        self.connected = threading.Event()
        self._queue: queue.Queue[list[Event] | BaseException | None] = queue.Queue()
        self._cancelled = threading.Event()
        self._conn: http.client.HTTPConnection | None = None
        self._conn_lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="etcd-watch", daemon=True)
        self._buffer: list[Event] = []

    def start(self) -> None:
        self._thread.start()

    def __enter__(self) -> Watch:
        return self

    def __exit__(self, *exc: object) -> None:
        self.cancel()

    def __iter__(self) -> Iterator[Event]:
        while True:
            events = self.next_events(None)
            if not events and self._cancelled.is_set():
                return
            yield from events

    def next_events(self, timeout: float | None) -> list[Event]:
        """The next batch of events ([] after `timeout` seconds without any, or once
        cancelled). Raises WatchCompacted when the start revision is gone."""
        if self._buffer:
            out, self._buffer = self._buffer, []
            return out
        if self._cancelled.is_set() and self._queue.empty():
            return []
        try:
            item = self._queue.get(timeout=timeout)
        except queue.Empty:
            return []
        if item is None:
            return []
        if isinstance(item, BaseException):
            raise item
        return item

    def cancel(self) -> None:
        self._cancelled.set()
        with self._conn_lock:
            conn = self._conn
        if conn is not None and conn.sock is not None:
            with contextlib.suppress(OSError):
                conn.sock.shutdown(socket.SHUT_RDWR)
        self._queue.put(None)
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)

    def _run(self) -> None:
        count = len(self.client.endpoints)
        index = self.client._current
        pause = 0.1
        while not self._cancelled.is_set():
            try:
                self._stream(index)
                pause = 0.1
            except WatchCompacted as exc:
                self._queue.put(exc)
                self._cancelled.set()
                return
            except (_Retry, EtcdError, OSError, http.client.HTTPException, ValueError):
                pass
            self.connected.clear()
            if self._cancelled.is_set():
                return
            index = (index + 1) % count
            self._cancelled.wait(pause)
            pause = min(pause * 2, 2.0)

    def _stream(self, index: int) -> None:
        client = self.client
        request: dict[str, Any] = {"key": _b64(self.key)}
        if self.prefix:
            request["range_end"] = _b64(prefix_end(self.key))
        if self.next_revision:
            request["start_revision"] = str(self.next_revision)
        headers = {"Content-Type": "application/json"}
        if client._credentials is not None:
            headers["Authorization"] = client._auth_token(index, client.timeout)
        conn = client.open(index, client.timeout)
        with self._conn_lock:
            self._conn = conn
        try:
            conn.request("POST", "/v3/watch", body=json.dumps({"create_request": request}),
                         headers=headers)
            response = conn.getresponse()
            if response.status != 200:
                raise _Retry(f"HTTP {response.status}")
            assert conn.sock is not None
            conn.sock.settimeout(None)  # a quiet watch is no failure: wait for events
            while not self._cancelled.is_set():
                line = response.readline()
                if not line:
                    raise _Retry("stream closed")
                self._line(json.loads(line))
        finally:
            with self._conn_lock:
                self._conn = None
            conn.close()

    def _line(self, doc: dict[str, Any]) -> None:
        if "error" in doc:
            message = str(doc["error"].get("message") if isinstance(doc["error"], dict)
                          else doc["error"])
            if any(words in message for words in _INVALID_AUTH):
                with self.client._token_lock:
                    self.client._token = None  # expired: a new one for the next stream
            raise _Retry(message)
        result = doc.get("result") or {}
        compacted = int(result.get("compact_revision", 0))
        if compacted:
            raise WatchCompacted(f"watch on {self.key!r} from revision {self.next_revision} "
                                 f"is compacted (oldest revision {compacted})")
        if result.get("canceled"):
            raise _Retry(str(result.get("cancel_reason") or "cancelled by etcd"))
        if result.get("created"):
            self.connected.set()
            if not self.next_revision:
                self.next_revision = _revision(result) + 1
        events = [Event(type=str(e.get("type", "PUT")), kv=_kv(e.get("kv") or {}))
                  for e in result.get("events", ())]
        if events:
            self.next_revision = events[-1].kv.mod_revision + 1
            self._queue.put(events)
