"""The verbs for many guests and for reaching them: `render`, `addresses`, `ssh`,
`console`; and the `-l/--selector` option of get, diff, apply, delete and export.

Selectors on specs (apply, diff, delete) narrow what is acted on to the selected
specs. With --prune, only managed objects whose recorded labels (owner mark, storage
record) match the selector are pruned, and never one the unselected specs declare
(`Policy.protected`).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import subprocess
from collections.abc import Sequence
from typing import Any, TextIO

from ..errors import ErrorCode, SpecError, VirtctlError
from ..model import Desired, Live, ObjectKey, Storage
from ..printable import printable
from ..selectors import parse_selector
from .common import connection_options, file_options

EXIT_OK, EXIT_ERROR = 0, 1


def _selector_arg(text: str) -> str:
    try:
        parse_selector(text)
    except SpecError as exc:
        raise argparse.ArgumentTypeError(exc.message) from None
    return text


def selector_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-l", "--selector", type=_selector_arg, default=None,
                        metavar="SELECTOR",
                        help="only objects whose labels match, as kubectl: role=web,"
                        "team!=b, env in (a,b), tier notin (x), key, !key")


def select_specs(desired: Desired, selector: str) -> tuple[Desired, tuple[str, ...]]:
    """The specs the selector selects, and the "kind/name" of those it leaves out (so
    --prune never deletes what they declare, whatever the live labels say)."""
    chosen = parse_selector(selector)

    def keep(table: Any) -> dict[str, Any]:
        return {k: s for k, s in table.items() if chosen.matches(s.labels)}

    out = dataclasses.replace(desired, domains=keep(desired.domains),
                              networks=keep(desired.networks), pools=keep(desired.pools),
                              volumes=keep(desired.volumes))
    left = [s for t in (desired.domains, desired.networks, desired.pools, desired.volumes)
            for s in t.values() if not chosen.matches(s.labels)]
    return out, tuple(sorted({str(s.key) for s in left}))


def _labels_of(live: Live, what: str, name: str) -> tuple[tuple[str, str], ...] | None:
    table = {"domains": live.domains, "networks": live.networks}.get(what)
    obj = table.get(name) if table is not None else None
    owner = getattr(obj, "owner", None)
    return owner.labels if owner is not None else None


def select_live(records: list[dict[str, Any]], live: Live, what: str, selector: str | None,
                addresses: dict[str, Any]) -> list[dict[str, Any]]:
    """`get` rows with labels and addresses, only those the selector selects (an
    unmanaged object has no recorded labels: no selector selects it). Pool and volume
    rows carry the labels of virtctl's storage record already (render/storage.py)."""
    from ..metadata import labels_from_text, labels_to_text

    chosen = parse_selector(selector) if selector else None
    out = []
    for row in records:
        if what in ("pools", "volumes"):
            text = row.get("labels")
            labels = labels_from_text(text) if text is not None else None
        else:
            labels = _labels_of(live, what, str(row.get("name")))
        if chosen is not None and (labels is None or not chosen.matches(labels)):
            continue
        row = dict(row, labels=labels_to_text(labels or ()))
        if what == "domains":
            row["addresses"] = ",".join(a.ip for a in addresses.get(str(row["name"]), ()))
        out.append(row)
    return out


def select_storage(storage: Storage, selector: str) -> frozenset[ObjectKey]:
    """The pools and volumes whose storage records' labels match (`export -l`); one
    without a record (not virtctl's) has no labels to select."""
    from ..reconciler.plan.plan_storage import view

    chosen = parse_selector(selector)
    found = view(storage)

    def pool_labels(name: str) -> tuple[tuple[str, str], ...] | None:
        record = found.records.get(name)
        return record.pool.labels if record is not None and record.pool is not None else None

    pools = {p.key for n, p in storage.pools.items()
             if (labels := pool_labels(n)) is not None and chosen.matches(labels)}
    volumes = {v.key for v in storage.volumes.values()
               if (record := found.volume_record(v)) is not None
               and chosen.matches(record.labels)}
    return frozenset(pools | volumes)


def select_live_objects(live: Live, selector: str) -> Live:
    chosen = parse_selector(selector)
    return dataclasses.replace(
        live,
        domains={n: d for n, d in live.domains.items()
                 if d.owner is not None and chosen.matches(d.owner.labels)},
        networks={n: d for n, d in live.networks.items()
                  if d.owner is not None and chosen.matches(d.owner.labels)})


def load_desired(args: argparse.Namespace, err: TextIO) -> Desired:
    """The specs of `-f`, warnings written to `err`; with `-l`, the selected ones only
    (`args.protected`: the objects the selector left out, never pruned)."""
    from .. import api

    # DomainSets are placed with their hosts' facts (existing instances stay where they
    # live) unless the command must not reach hosts (validate/render --offline).
    desired = api.load(args.paths, place=not getattr(args, "offline", False),
                       call_timeout=getattr(args, "call_timeout", None))
    err.writelines(f"warning: {printable(warning)}\n" for warning in desired.warnings)
    if getattr(args, "selector", None) is not None:  # -l: act on the selected specs only
        desired, args.protected = select_specs(desired, args.selector)
    return desired



# -- verbs ----------------------------------------------------------------------------


def add_guest_parsers(sub: Any) -> None:
    p = sub.add_parser("render", help="print the specs as they will be planned (sets "
                       "expanded), one YAML document per object with its host")
    connection_options(p)
    file_options(p)
    selector_option(p)
    p.add_argument("--offline", action="store_true",
                   help="read no host: DomainSets placed as on empty hosts (without it, "
                   "an instance that lives on one of its set's hosts is shown there)")
    p.set_defaults(func=cmd_render)

    p = sub.add_parser("addresses", help="guests' IP addresses (guest agent, else DHCP "
                       "leases, else ARP)")
    connection_options(p)
    p.add_argument("name", nargs="?", metavar="NAME", help="one guest (default: all)")
    p.add_argument("-o", "--output", choices=("table", "json"), default="table")
    p.set_defaults(func=cmd_addresses)

    p = sub.add_parser("ssh", help="run the system ssh to a guest's address")
    connection_options(p)
    p.add_argument("name", metavar="NAME")
    p.add_argument("-f", "--filename", dest="paths", action="append", metavar="PATH",
                   help="specs to take the login user from (the cloud-init users)")
    p.add_argument("--user", help="login user (default: from the cloud-init spec, else "
                   "ssh's own)")
    p.add_argument("--print", dest="print_only", action="store_true",
                   help="print the ssh command line (JSON list) instead of running it")
    p.add_argument("command", nargs=argparse.REMAINDER, metavar="-- CMD",
                   help="a command to run on the guest (its words are arguments, never "
                   "read by a local shell); options go before NAME")
    p.set_defaults(func=cmd_ssh)

    p = sub.add_parser("console", help="the guest's serial console (escape: Ctrl+])")
    connection_options(p)
    p.add_argument("name", metavar="NAME")
    p.add_argument("--devname", default=None, help="the console or serial alias to open")
    p.set_defaults(func=cmd_console)


def cmd_render(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from .. import api
    from ..render.specs import render_documents

    desired = load_desired(args, err)
    out.write(render_documents(api.split_hosts(desired, args.connect)))
    return EXIT_OK


def cmd_addresses(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from .. import api
    from .reach import guest_addresses

    with api.connect(args.connect, readonly=True, call_timeout=args.call_timeout) as reader:
        live = reader.snapshot()
        if args.name is not None and args.name not in live.domains:
            raise VirtctlError(f"no domain {args.name!r} on {reader.uri}",
                               code=ErrorCode.NO_SUCH_DOMAIN)
        found = guest_addresses(reader, live, [args.name] if args.name else None)
    if args.output == "json":
        out.write(json.dumps({n: [a.as_dict() for a in found.get(n, ())]
                              for n in sorted(found)}, indent=2) + "\n")
        return EXIT_OK
    from ..render.report import table

    rows = [{"name": n, "address": a.ip, "mac": a.mac, "source": a.source}
            for n in sorted(found) for a in found[n]]
    out.write(table(rows, ["name", "address", "mac", "source"]))
    if args.name is not None and not found.get(args.name):
        err.write(printable(f"{args.name}: no address known (not running, or no agent, "
                            "lease or ARP entry yet)") + "\n")
        return EXIT_ERROR
    return EXIT_OK


def _user_from_specs(paths: Sequence[str], name: str) -> str | None:
    """The cloud-init login user of domain `name` in the specs, expanded as planned.

    Sets are expanded without their hosts' facts (no host is read for this): the user
    comes from the set's template, the same for every instance wherever it is placed
    (only a `{host}` placeholder in it could differ, and a login user naming its host
    is not a thing), so placing as on empty hosts gives the same answer."""
    from ..reconciler.load.load import expand
    from .reach import cloud_user
    import yaml

    from ..converters.yaml.yamlstrict import StrictLoader
    from ..reconciler.load.domainset import expand as expand_set

    for spec_file in expand(list(paths)):
        if not spec_file.name.endswith((".yaml", ".yml")):
            continue
        try:
            docs = list(yaml.load_all(spec_file.text, Loader=StrictLoader))
        except yaml.YAMLError:
            continue
        for doc in docs:
            if not isinstance(doc, dict):
                continue
            candidates = [doc] if doc.get("kind") == "Domain" else []
            if doc.get("kind") == "DomainSet":
                try:
                    candidates = [d for _, d in expand_set(doc).documents
                                  if d.get("kind") == "Domain"]
                except Exception:  # noqa: BLE001 - a broken set: validate says why
                    continue
            for dom in candidates:
                cloud = dom.get("cloudInit")
                if dom.get("name") == name and isinstance(cloud, dict):
                    return cloud_user(cloud.get("userData"))
    return None


def cmd_ssh(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from .. import api
    from .reach import first_ip, guest_addresses, ssh_argv

    command = list(args.command)
    if command[:1] == ["--"]:
        command = command[1:]
    with api.connect(args.connect, readonly=True, call_timeout=args.call_timeout) as reader:
        live = reader.snapshot()
        if args.name not in live.domains:
            raise VirtctlError(f"no domain {args.name!r} on {reader.uri}",
                               code=ErrorCode.NO_SUCH_DOMAIN)
        ip = first_ip(guest_addresses(reader, live, [args.name]).get(args.name, ()))
    if ip is None:
        raise VirtctlError(f"{args.name}: no address known (not running, or no agent, "
                           "lease or ARP entry yet); see `virtctl addresses`",
                           code=ErrorCode.OPERATION_INVALID)
    user = args.user or (_user_from_specs(args.paths, args.name) if args.paths else None)
    argv = ssh_argv(ip, user, command)
    if args.print_only:
        out.write(json.dumps(argv) + "\n")
        return EXIT_OK
    try:
        return subprocess.run(argv, check=False).returncode  # an argv list: no shell
    except FileNotFoundError:
        raise VirtctlError("ssh is not installed (no 'ssh' on PATH)",
                           code=ErrorCode.OPERATION_FAILED) from None


def cmd_console(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from .. import api
    from .console import run_console

    with api.connect(args.connect, readonly=False, call_timeout=args.call_timeout) as driver:
        return run_console(driver, args.name, args.devname, err)
