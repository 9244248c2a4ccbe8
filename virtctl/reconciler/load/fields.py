"""What YAML and XML specs spell alike: the runtime keys of domains, networks, pools and
volumes (`connect`, `updatePolicy` / `update-policy`, `shutdownTimeout`, yes/no flags),
read the same way by load.py and loadstorage.py. Pure.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ...errors import Source, SpecError
from ...model import UpdatePolicy

_TRUE = {"yes", "true", "on", "1"}
_FALSE = {"no", "false", "off", "0"}


def flag(attrs: Mapping[str, str], key: str, default: bool, source: Source) -> bool:
    raw = attrs.get(key)
    if raw is None:
        return default
    if raw.lower() in _TRUE:
        return True
    if raw.lower() in _FALSE:
        return False
    raise SpecError(f"expected yes or no, got {raw!r}", source=source)


def connect_of(given: Mapping[str, Any]) -> str | None:
    value = given.get("connect")
    return str(value).strip() or None if value is not None else None


def update_rules(
    given: Mapping[str, Any], source: Source, *, yaml: bool
) -> tuple[UpdatePolicy | None, float | None]:
    """updatePolicy and shutdownTimeout (YAML keys), or the runtime element's
    update-policy and shutdown-timeout attributes (XML)."""
    policy_key, timeout_key = ("updatePolicy", "shutdownTimeout") if yaml else (
        "update-policy", "shutdown-timeout")
    raw_policy, raw_timeout = given.get(policy_key), given.get(timeout_key)
    if isinstance(raw_policy, Mapping):  # {mode: restart, checkpoint: ...} (checkpoint rules)
        raw_policy = raw_policy.get("mode")
    try:
        policy = UpdatePolicy(raw_policy) if raw_policy is not None else None
    except ValueError:
        raise SpecError(f"{policy_key} must be restart, next-boot or recreate, not "
                        f"{raw_policy!r}", source=source) from None
    try:
        timeout = float(raw_timeout) if raw_timeout is not None else None
    except (TypeError, ValueError):
        timeout = -1.0
    if timeout is not None and not 0 <= timeout < float("inf"):
        raise SpecError(f"{timeout_key} must be a number of seconds >= 0, not {raw_timeout!r}",
                        source=source)
    return policy, timeout
