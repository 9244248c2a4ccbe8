"""The many-host watcher's catalog cost in one process (issue 21), without hosts or etcd:
N host files x D domains, as bench_fleet.py writes them.

Measures (CPU seconds of this process):
- the first reading: every file parsed and routed (the floor each fleet member pays once
  when it starts, since the watcher's parse cache is in memory);
- a change touching every file: every file re-parsed, routed once;
- a round of N host passes after that change (each host's share of the shared view):
  what used to cost one full read + route per pass;
- a resync that finds nothing new (every file read and compared, nothing parsed/routed);
- a change to one file: one file parsed, routed once.

    python bench/bench_catalog.py --hosts 1000 --domains 10
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.bench_fleet import host_spec  # noqa: E402
from virtctl.watch.fleet import Catalog, HostSpecs  # noqa: E402
from virtctl.watch.logs import Log, LogFormat  # noqa: E402
from virtctl.watch.metrics import WatchMetrics  # noqa: E402


def cpu(step: Callable[[], object]) -> float:
    began = time.process_time()
    step()
    return round(time.process_time() - began, 3)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hosts", type=int, default=1000)
    parser.add_argument("--domains", type=int, default=10)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="virtctl-bench-catalog-") as root:
        specs = Path(root)
        hosts = [f"bench-{i:04d}" for i in range(args.hosts)]

        def write(memory: int, only: list[str] | None = None) -> None:
            for host in only or hosts:
                (specs / f"{host}.yaml").write_text(host_spec(host, args.domains, memory))

        write(64)
        catalog = Catalog([str(specs)], default="sim:///default",
                          journal=Log(io.StringIO(), fmt=LogFormat("json")),
                          metrics=WatchMetrics())
        result: dict[str, object] = {"hosts": args.hosts, "domains_per_host": args.domains}
        result["first_read_and_route_cpu_s"] = cpu(catalog.refresh)
        views = [HostSpecs(catalog, f"sim:///{h}") for h in hosts]
        write(96)
        catalog.changed()
        result["change_every_file_read_and_route_cpu_s"] = cpu(catalog.refresh)
        result["round_of_host_passes_cpu_s"] = cpu(lambda: [v.read() for v in views])
        result["resync_nothing_new_cpu_s"] = cpu(catalog.resync)
        write(128, only=hosts[:1])
        catalog.changed()
        parses = catalog._files.parses
        result["change_one_file_cpu_s"] = cpu(catalog.refresh)
        result["change_one_file_parsed"] = catalog._files.parses - parses
        result["readings_routed"] = catalog.readings
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
