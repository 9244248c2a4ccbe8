"""Command-line options shared by the verbs of virtctl/cli/commands.py and virtctl watch (which
must not import cli.py)."""

from __future__ import annotations

import argparse
import math
import threading
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from ..reconciler.load.gitinfo import DefaultSet

if TYPE_CHECKING:
    from ..coord.config import Coordination


# The longest wait Python's locks and sleeps take (about 292 years); more is an error.
LONGEST = threading.TIMEOUT_MAX


def _number(text: str, kind: type[float] | type[int]) -> float:
    try:
        value = kind(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"invalid {'whole ' if kind is int else ''}number {text!r}") from None
    # nan compares false with everything (a wait for it never ends); inf never ends.
    if isinstance(value, float) and not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return value


def seconds(text: str) -> float:
    """An argparse type: a duration in seconds, 0 or more, finite, at most LONGEST."""
    value = _number(text, float)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is negative: give 0 or more seconds")
    if value > LONGEST:
        raise argparse.ArgumentTypeError(f"{text!r} is too long (at most {LONGEST:.0f} s)")
    return value


def positive_seconds(text: str) -> float:
    """An argparse type: a duration in seconds, more than 0 (a wait of 0 s would never
    let anything finish), finite, at most LONGEST."""
    value = seconds(text)
    if value == 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be more than 0 seconds")
    return value


def positive_count(text: str) -> int:
    """An argparse type: a whole number, 1 or more."""
    value = int(_number(text, int))
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be 1 or more")
    return value


def call_timeout_option(parser: argparse.ArgumentParser) -> None:
    """--call-timeout (every verb that talks to a host; before or after the verb)."""
    parser.add_argument("--call-timeout", type=positive_seconds, default=argparse.SUPPRESS,
                        metavar="SECONDS",
                        help="give up on a host that does not answer one libvirt call this "
                        "long: the run stops, says which action is uncertain, exits 1 "
                        "(default: $VIRTCTL_CALL_TIMEOUT, else 60)")


def live_options(parser: argparse.ArgumentParser) -> None:
    """--no-live and --detach-timeout (apply, diff and watch)."""
    parser.add_argument("--no-live", dest="live", action="store_false",
                        help="change running guests and networks only at their next start: "
                        "no hot-plug, vcpu or network live updates (memory balloon stays)")
    parser.add_argument("--detach-timeout", type=seconds, default=30.0, metavar="SECONDS",
                        help="how long a guest may take to release a detached device, or to "
                        "move its memory balloon, before the change is reported pending and "
                        "left restart-pending (default 30)")
    parser.add_argument("--force-detach", action="store_true",
                        help="detach a disk even when the guest agent says a filesystem on it "
                        "is mounted (default: such a detach is refused, naming the mount)")


def lock_options(parser: argparse.ArgumentParser) -> None:
    """--lock-timeout (the verbs that change a host)."""
    parser.add_argument("--lock-timeout", type=seconds, default=None, metavar="SECONDS",
                        help="give up (exit 1) when another virtctl run holds the host's lock "
                        "this long (default: wait, saying every 10 s who holds it)")


def set_options(parser: argparse.ArgumentParser) -> None:
    """--set, --prune-all and --prune-set (apply, diff, watch)."""
    parser.add_argument("--set", dest="apply_set", default=None, metavar="NAME",
                        help="the apply set this run owns; --prune deletes only its objects "
                        "(default: named after the -f paths: git:ROOT-COMMIT:specs/prod "
                        "in a git work tree, else the absolute path; required with --prune "
                        "for -f - and shallow clones)")
    parser.add_argument("--prune-all", action="store_true",
                        help="with --prune: lift the limit of 5 objects (and the refusal "
                        "of specs that declare nothing); still only this run's set")
    parser.add_argument("--prune-set", dest="prune_sets", action="append", default=[],
                        metavar="NAME",
                        help="with --prune: also delete objects of apply set NAME absent "
                        "from the specs (repeatable; '' names objects marked before sets)")


def apply_sets(args: argparse.Namespace, default: Callable[[], DefaultSet]) -> tuple[
        str, tuple[str, ...]]:
    """This run's apply set and the other sets --prune may reach (--prune-set), from the
    options of `set_options` (absent ones mean none). `default` names the set from the
    -f paths (gitinfo.default_set). Raises ValueError with advice that is safe to
    follow: --prune from paths that name no stable set (stdin, a shallow clone) needs
    --set, and --prune-set needs --prune."""
    given = getattr(args, "apply_set", None)
    prune = bool(getattr(args, "prune", False))
    others = tuple(sorted(set(getattr(args, "prune_sets", None) or ())))
    if others and not prune:
        raise ValueError("--prune-set needs --prune")
    from ..limits import invisible

    for name in (given or "", *others):
        if invisible(name):  # a set is printed and matched as a name: no spoofing
            raise ValueError(f"a set name has no control or invisible format characters "
                             f"({invisible(name)}): {name!r}")
    if given is not None:
        if not given.strip():
            raise ValueError("--set needs a name")
        return given.strip(), others
    found = default()
    if prune and found.unstable:
        raise ValueError(
            "--prune needs --set NAME here, since these specs name no apply set that "
            f"stays the same from run to run ({'; '.join(found.unstable)}); pass a name "
            "of your own, the same in every run that applies these specs (--prune then "
            "deletes only objects applied with that name)")
    return found.name, others


def coordination_options(parser: argparse.ArgumentParser) -> None:
    """--coordination and the etcd options (apply, diff, delete, watch, status;
    docs/fleet.md). No option takes a password: `ps` shows a command line to everyone."""
    parser.add_argument("--coordination", default=None, metavar="URL",
                        help="coordinate with other machines through etcd: "
                        "etcd://HOST:PORT[,HOST:PORT...] or etcd+https://...; host locks "
                        "are etcd leases keyed by the host's identity (default: "
                        "$VIRTCTL_COORDINATION, else the local lock directory only)")
    parser.add_argument("--etcd-ca", default=None, metavar="FILE",
                        help="CA certificates to verify etcd+https endpoints with")
    parser.add_argument("--etcd-cert", default=None, metavar="FILE",
                        help="client certificate for etcd+https (with --etcd-key)")
    parser.add_argument("--etcd-key", default=None, metavar="FILE",
                        help="the client certificate's private key")
    parser.add_argument("--etcd-password-file", default=None, metavar="FILE",
                        help="etcd auth: the password (first line) of the user named in "
                        "the URL (etcd://USER@HOST:PORT) or $VIRTCTL_ETCD_USER (default: "
                        "$VIRTCTL_ETCD_PASSWORD)")
    parser.add_argument("--lease-ttl", type=positive_count, default=None, metavar="SECONDS",
                        help="how long a host stays locked after its holder died or lost "
                        "etcd; the lock is renewed every third of it (default 15)")


def coordination(args: argparse.Namespace, env: Mapping[str, str]) -> Coordination | None:
    """The coordination the options of `coordination_options` (or
    $VIRTCTL_COORDINATION) name; None for the local lock directory alone. Raises
    CoordinationError (a VirtctlError) for a URL or file that cannot be used."""
    url = getattr(args, "coordination", None) or env.get("VIRTCTL_COORDINATION") or None
    if url is None:
        for option in ("etcd_ca", "etcd_cert", "etcd_key", "etcd_password_file",
                       "lease_ttl"):
            if getattr(args, option, None) is not None:
                from ..coord.config import CoordinationError

                flag = "--" + option.replace("_", "-")
                raise CoordinationError(f"{flag} needs --coordination URL "
                                        "(or $VIRTCTL_COORDINATION)")
        return None
    # Imported only when coordination is asked for: the etcd client stays unloaded.
    from ..coord.config import DEFAULT_TTL, parse_coordination

    ttl = getattr(args, "lease_ttl", None)
    return parse_coordination(
        url, env=env, ca=getattr(args, "etcd_ca", None), cert=getattr(args, "etcd_cert", None),
        key=getattr(args, "etcd_key", None),
        password_file=getattr(args, "etcd_password_file", None),
        lease_ttl=DEFAULT_TTL if ttl is None else ttl)
