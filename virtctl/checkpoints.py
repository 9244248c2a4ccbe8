"""What a guest declares about checkpoints and health, and a checkpoint's record. Pure.

A spec carries these as flat (key, value) text pairs (`DomainSpec.safety`), so the spec
cache and digests handle them like any other field; `safety_of` gives the typed view.
YAML writes them as `updatePolicy: {mode: ..., checkpoint: true | {keep: N, memory: B}}`
and `health: {agent: true, tcp: {port: 22}, cloudInit: done, timeout: 120s}`; an XML
file as attributes of its `virtctl:runtime` element (`checkpoint="yes"
checkpoint-keep="3" checkpoint-memory="no" health-agent="yes" health-tcp-port="22"
health-cloud-init="done" health-timeout="120"`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import ErrorCode, Source, SpecError

#: Checkpoints virtctl made carry this prefix; no other snapshot is ever touched.
PREFIX = "virtctl-"
DEFAULT_KEEP = 5
DEFAULT_HEALTH_TIMEOUT = 120.0
#: The guest agent's virtio-serial channel (libvirt and QEMU's name for it).
AGENT_CHANNEL = "org.qemu.guest_agent.0"

Pairs = tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class Health:
    """What "healthy" means for a guest: every declared probe answers within `timeout`
    seconds of the start (a running guest is always required)."""

    agent: bool = False
    tcp_port: int | None = None
    cloud_init: bool = False
    timeout: float = DEFAULT_HEALTH_TIMEOUT

    def describe(self) -> str:
        parts = (["agent"] if self.agent else []) + (
            [f"tcp port {self.tcp_port}"] if self.tcp_port is not None else []) + (
            ["cloud-init done"] if self.cloud_init else [])
        return " + ".join(parts) or "running"


@dataclass(frozen=True, slots=True)
class Safety:
    """A guest's rules: checkpoint before disruptive changes (`checkpoint`), how many
    of virtctl's checkpoints to keep, with memory state or not, and its health."""

    checkpoint: bool = False
    keep: int = DEFAULT_KEEP
    memory: bool = False
    health: Health | None = None


def safety_of(pairs: Pairs) -> Safety:
    """The typed rules from a spec's pairs (already checked while loading)."""
    got = dict(pairs)
    health = None
    if any(k.startswith("health-") for k in got):
        port = got.get("health-tcp-port")
        health = Health(agent=got.get("health-agent") == "yes",
                        tcp_port=int(port) if port else None,
                        cloud_init=got.get("health-cloud-init") == "done",
                        timeout=float(got.get("health-timeout", DEFAULT_HEALTH_TIMEOUT)))
    return Safety(checkpoint=got.get("checkpoint") == "yes",
                  keep=int(got.get("checkpoint-keep", DEFAULT_KEEP)),
                  memory=got.get("checkpoint-memory") == "yes", health=health)


# -- loading ----------------------------------------------------------------------------

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_UNIT = {None: 1.0, "ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def seconds_of(value: Any, where: Source) -> float:
    """120, 120.5, '120s', '2m', '1h' -> seconds (> 0)."""
    if isinstance(value, bool):
        raise SpecError(f"{where.path}: a duration is a number of seconds or '120s', "
                        f"'2m', not {value!r}", source=where)
    if isinstance(value, int | float):
        found = float(value)
    else:
        match = _DURATION.match(str(value))
        if match is None:
            raise SpecError(f"{where.path}: a duration is a number of seconds or '120s', "
                            f"'2m', not {value!r}", source=where)
        found = float(match.group(1)) * _UNIT[match.group(2)]
    if not 0 < found < 7 * 86400:
        raise SpecError(f"{where.path}: must be more than 0 and less than a week, not "
                        f"{value!r}", source=where)
    return found


def _at(source: Source, path: str) -> Source:
    return Source(source.file, source.line, path)


def yaml_pairs(runtime: Mapping[str, Any], source: Source) -> Pairs:
    """The pairs from a YAML document's `updatePolicy` (object form) and `health`."""
    out: dict[str, str] = {}
    policy = runtime.get("updatePolicy")
    if isinstance(policy, Mapping):
        rule = policy.get("checkpoint")
        if isinstance(rule, Mapping):
            out["checkpoint"] = "yes"
            if "keep" in rule:
                out["checkpoint-keep"] = str(_count(rule["keep"],
                                                    _at(source, "updatePolicy.checkpoint.keep")))
            if rule.get("memory"):
                out["checkpoint-memory"] = "yes"
        elif rule is True:
            out["checkpoint"] = "yes"
    health = runtime.get("health")
    if isinstance(health, Mapping):
        if health.get("agent") is True:
            out["health-agent"] = "yes"
        tcp = health.get("tcp")
        if isinstance(tcp, Mapping) and "port" in tcp:
            out["health-tcp-port"] = str(_port(tcp["port"], _at(source, "health.tcp.port")))
        if health.get("cloudInit") == "done":
            out["health-cloud-init"] = "done"
        if "timeout" in health:
            out["health-timeout"] = repr(seconds_of(health["timeout"],
                                                    _at(source, "health.timeout")))
        if not {"health-agent", "health-tcp-port", "health-cloud-init"} & set(out):
            raise SpecError("health: name at least one of agent: true, tcp: {port: N}, "
                            "cloudInit: done", source=_at(source, "health"))
    return tuple(sorted(out.items()))


_XML_KEYS = ("checkpoint", "checkpoint-keep", "checkpoint-memory", "health-agent",
             "health-tcp-port", "health-cloud-init", "health-timeout")


def xml_pairs(attrs: Mapping[str, str], source: Source) -> Pairs:
    """The pairs from an XML file's `virtctl:runtime` attributes."""
    out: dict[str, str] = {}
    for key in _XML_KEYS:
        if key not in attrs:
            continue
        value = attrs[key].strip()
        where = _at(source, f"metadata/virtctl:runtime/@{key}")
        if key in ("checkpoint", "checkpoint-memory", "health-agent"):
            if value not in ("yes", "no"):
                raise SpecError(f"{key} must be yes or no, not {value!r}", source=where)
        elif key == "checkpoint-keep":
            value = str(_count(value, where))
        elif key == "health-tcp-port":
            value = str(_port(value, where))
        elif key == "health-cloud-init":
            if value != "done":
                raise SpecError(f"{key} must be done, not {value!r}", source=where)
        else:
            value = repr(seconds_of(value, where))
        out[key] = value
    return tuple(sorted((k, v) for k, v in out.items() if v != "no"))


def _count(value: Any, where: Source) -> int:
    try:
        found = int(value)
    except (TypeError, ValueError):
        found = 0
    if isinstance(value, bool) or found < 1 or str(found) != str(value).strip():
        raise SpecError(f"{where.path}: must be a whole number >= 1, not {value!r}",
                        source=where, code=ErrorCode.INVALID_SPEC)
    return found


def _port(value: Any, where: Source) -> int:
    try:
        found = int(value)
    except (TypeError, ValueError):
        found = 0
    if isinstance(value, bool) or not 1 <= found <= 65535:
        raise SpecError(f"{where.path}: a TCP port is 1 to 65535, not {value!r}",
                        source=where)
    return found


def yaml_keys(pairs: Pairs, mode: str | None) -> dict[str, Any]:
    """The YAML keys the pairs came from (for `virtctl render`): updatePolicy in its
    object form when it has a checkpoint rule, and health."""
    rules = safety_of(pairs)
    out: dict[str, Any] = {}
    if rules.checkpoint:
        rule: dict[str, Any] = {"keep": rules.keep} | ({"memory": True} if rules.memory else {})
        out["updatePolicy"] = ({"mode": mode} if mode else {}) | {"checkpoint": rule}
    if rules.health is not None:
        health = rules.health
        out["health"] = ({"agent": True} if health.agent else {}) | (
            {"tcp": {"port": health.tcp_port}} if health.tcp_port is not None else {}) | (
            {"cloudInit": "done"} if health.cloud_init else {}) | {
            "timeout": f"{health.timeout:g}s"}
    return out


# -- a checkpoint's record --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SnapshotInfo:
    """One snapshot of a guest as a driver lists it. `description` holds virtctl's
    record (JSON) for its own checkpoints; `created` is Unix time; `definition` the
    guest's persistent definition it saved ("" where the driver cannot tell)."""

    name: str
    created: float
    description: str = ""
    memory: bool = False
    definition: str = field(default="", repr=False)

    @property
    def ours(self) -> bool:
        return self.name.startswith(PREFIX) and record_of(self.description) is not None


@dataclass(frozen=True, slots=True)
class CheckpointRecord:
    """What virtctl writes in a checkpoint's description."""

    commit: str
    time: str  # ISO 8601, UTC
    spec: str  # the owner mark's spec-hash of the definition it saved ("" if none)
    reason: str = ""

    def text(self) -> str:
        return json.dumps({"virtctl": 1, "commit": self.commit, "time": self.time,
                           "spec": self.spec, "reason": self.reason}, sort_keys=True)


def record_of(description: str) -> CheckpointRecord | None:
    try:
        data = json.loads(description)
    except ValueError:
        return None
    if not isinstance(data, dict) or data.get("virtctl") != 1:
        return None
    return CheckpointRecord(commit=str(data.get("commit", "")), time=str(data.get("time", "")),
                            spec=str(data.get("spec", "")), reason=str(data.get("reason", "")))


@dataclass(frozen=True, slots=True)
class Failure:
    """A change that failed its health gate and was rolled back. It is the same change
    while the spec has the same digest and the guest the same uuid and the definition
    rolled back to (its owner mark's spec-hash `base`)."""

    guest: str
    uuid: str
    digest: str  # the spec digest of the change (model.spec_digest)
    base: str  # the owner spec-hash of the definition the rollback restored
    checkpoint: str
    why: str
    time: str  # ISO time of the verdict


def checkpoint_name(stamp: str, commit: str, taken: set[str] | frozenset[str]) -> str:
    """virtctl-<time>-<commit> (`stamp`: 20261207T112233Z; the commit's first 12
    characters, 'nocommit' outside git), with -2, -3... when taken in the same second."""
    base = f"{PREFIX}{stamp}-{(commit or 'nocommit')[:12]}"
    name, n = base, 1
    while name in taken:
        n += 1
        name = f"{base}-{n}"
    return name


def ours_oldest_first(snapshots: tuple[SnapshotInfo, ...]) -> list[SnapshotInfo]:
    return sorted((s for s in snapshots if s.ours), key=lambda s: (s.created, s.name))
