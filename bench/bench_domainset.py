"""Benchmark: plan a DomainSet of 1,000 instances on the sim (issue 24; target < 1 s).

Run: python bench/bench_domainset.py [--replicas N] [--hosts H] [--repeat R]
Writes a spec folder (Hosts, one network per host, one DomainSet of N instances with a
DHCP range, round-robin over H sim hosts) into a temporary directory and measures, best
of R: loading (expansion, schema, conversion; the spec cache off), and planning on
every host: against empty hosts (everything to create) and, after applying once, against
hosts in sync (the no-op), and loading with stable placement (the hosts read for where
the instances live, as apply and diff do; `--placement memory` also reads node facts).
Exits 1 if planning against empty hosts misses 1 s.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from virtctl import api  # noqa: E402
from virtctl.api import read_placement_facts as read_facts  # noqa: E402


def write_specs(folder: Path, replicas: int, hosts: int, placement: str) -> None:
    names = [f"h{i}" for i in range(hosts)]
    (folder / "hosts.yaml").write_text(
        "kind: Hosts\nhosts: {" + ", ".join(f'{h}: "sim:///{h}"' for h in names) + "}\n")
    (folder / "nets.yaml").write_text("".join(
        f"---\nkind: Network\nname: lan\nconnect: {h}\n"
        "ips: [{address: 10.50.0.1, prefix: 16}]\n" for h in names))
    (folder / "set.yaml").write_text(
        f"kind: DomainSet\nname: web\nreplicas: {replicas}\npattern: 'web-{{index:04}}'\n"
        f"hosts: [{', '.join(names)}]\nplacement: {placement}\nlabels: {{role: web}}\n"
        "network: {name: lan, range: {start: 10.50.1.0, end: 10.50.255.254}}\n"
        "template:\n  type: kvm\n  memory: 64MiB\n  state: shutoff\n"
        "  os: {type: hvm, arch: x86_64}\n"
        "  interfaces: [{type: network, source: {network: lan}}]\n")


def plan_all(desired: api.Desired) -> int:
    count = 0
    for uri, share in api.split_hosts(desired).items():
        with api.connect(uri, readonly=True) as reader:
            count += len(api.plan(share, reader).actions)
    return count


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--replicas", type=int, default=1000)
    parser.add_argument("--hosts", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--placement", choices=("roundRobin", "memory"), default="roundRobin")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        os.environ.update(VIRTCTL_STATE_DIR=str(Path(tmp) / "state"), VIRTCTL_CACHE="0")
        folder = Path(tmp) / "specs"
        folder.mkdir()
        write_specs(folder, args.replicas, args.hosts, args.placement)
        load = plan_empty = plan_sync = float("inf")
        # place=False: the load alone, no host read (api.load reads the hosts' facts by
        # default, measured below as "load with placement facts").
        desired = api.load([str(folder)], place=False)
        for _ in range(args.repeat):
            start = time.perf_counter()
            desired = api.load([str(folder)], place=False)
            load = min(load, time.perf_counter() - start)
            start = time.perf_counter()
            actions = plan_all(desired)
            plan_empty = min(plan_empty, time.perf_counter() - start)
        for uri, share in api.split_hosts(desired).items():
            with api.connect(uri) as driver:
                api.apply(api.plan(share, driver), driver)
        for _ in range(args.repeat):
            start = time.perf_counter()
            left = plan_all(desired)
            plan_sync = min(plan_sync, time.perf_counter() - start)
        placed = float("inf")
        for _ in range(args.repeat):
            start = time.perf_counter()
            again = api.load([str(folder)], place=True)
            placed = min(placed, time.perf_counter() - start)
        moved = sum(1 for k, d in again.domains.items() if desired.domains[k].connect
                    != d.connect)
        facts = float("inf")  # the reads alone: one snapshot (and node info) per host
        uris = {f"sim:///h{i}": args.placement == "memory" for i in range(args.hosts)}
        for _ in range(args.repeat):
            start = time.perf_counter()
            read_facts(uris)
            facts = min(facts, time.perf_counter() - start)
    print(f"DomainSet of {args.replicas} on {args.hosts} sim hosts, placement "
          f"{args.placement} (best of {args.repeat}):")
    print(f"  load (expand, validate, convert): {load:.3f} s")
    print(f"  load with placement facts:        {placed:.3f} s ({moved} instances moved)")
    print(f"  of which reading the hosts' facts: {facts:.3f} s")
    print(f"  plan against empty hosts:         {plan_empty:.3f} s ({actions} actions)")
    print(f"  plan against hosts in sync:       {plan_sync:.3f} s ({left} actions)")
    return 0 if plan_empty < 1.0 and left == 0 and moved == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
