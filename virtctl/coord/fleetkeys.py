"""The fleet's etcd keys (docs/fleet.md, "Key layout"), and reading the status table.

Light on purpose (json, re and the etcd client): `virtctl status` imports this and
nothing of the reconciler, so it answers in a fraction of a second.

    /virtctl/fleet/NAME/members/MEMBER   a central member, under its lease
    /virtctl/fleet/NAME/agents/HOSTID    a host's agent, under its lease
    /virtctl/fleet/NAME/status/HOSTID    the host's last StatusRecord (status.py)
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING

from ..errors import ErrorCode, ErrorDomain, VirtctlError

if TYPE_CHECKING:
    from .etcd import EtcdClient

PREFIX = "/virtctl/"  # as backend.PREFIX (the locks are /virtctl/locks/HOSTID)
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")


class FleetError(VirtctlError):
    default_code = ErrorCode.OPERATION_INVALID
    default_domain = ErrorDomain.COORDINATION


def check_name(kind: str, name: str) -> str:
    """A fleet or member name: one etcd key segment, printable, short."""
    if not _NAME.match(name):
        raise FleetError(f"a {kind} name is 1-63 letters, digits, '.', '_' or '-' "
                         f"(starting with a letter or digit): {name!r}")
    return name


def fleet_prefix(fleet: str) -> str:
    return f"{PREFIX}fleet/{fleet}/"


def members_prefix(fleet: str) -> str:
    return fleet_prefix(fleet) + "members/"


def agents_prefix(fleet: str) -> str:
    return fleet_prefix(fleet) + "agents/"


def status_key(fleet: str, host: str) -> str:
    return fleet_prefix(fleet) + "status/" + host


def member_of(value: bytes) -> str:
    """The member name in a members/ or agents/ value ("" if unreadable)."""
    try:
        return str(json.loads(value).get("member", ""))
    except (ValueError, AttributeError, RecursionError):
        return ""


def read_status(client: EtcdClient, fleet: str | None) -> tuple[
        list[tuple[str, str, bytes]], dict[str, set[str]]]:
    """Every status record of `fleet` (None: of every fleet) and each fleet's live
    member names (central members and agents), in one range request."""
    prefix = fleet_prefix(fleet) if fleet else f"{PREFIX}fleet/"
    got = client.range(prefix)
    records: list[tuple[str, str, bytes]] = []
    live: dict[str, set[str]] = {}
    for kv in got.kvs:
        parts = kv.key[len(f"{PREFIX}fleet/"):].split("/")
        if len(parts) != 3:
            continue
        name, kind, leaf = parts
        if kind == "status":
            records.append((name, leaf, kv.value))
        elif kind == "members":
            live.setdefault(name, set()).add(leaf)
        elif kind == "agents":
            live.setdefault(name, set()).add(member_of(kv.value))
    return records, live
