"""The facts DomainSet placement weighs, read from the hosts: `read_placement_facts`.

Shared by every path that places sets for real (api.load for apply, diff, delete,
validate and render; the watcher's Catalog), so they read the same facts the same way
and so place alike. The placing itself is pure (load/placement.py, load/loadset.py).

Side effects: one read-only connection per host, concurrently (bounded). Here rather
than in virtctl.coord (which has `run_per_host`) because the reconciler and coord are
one layer and never import each other; the few lines of bounded concurrency are
repeated instead.
"""

from __future__ import annotations

from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor

from .. import drivers
from ..errors import VirtctlError
from ..model import SET_LABEL
from .load.placement import HostFacts


def read_placement_facts(asked: Mapping[str, bool], *, call_timeout: float | None = None,
                         parallel: int = 4, env: Mapping[str, str] | None = None,
                         ) -> dict[str, HostFacts | str]:
    """Facts per host URI of `asked` (URI -> whether its node facts are needed), or why
    the host could not be read (its error's first line).

    For each host: the managed guests that carry a `domainset` label (where each set's
    instances live, from the owner mark), and, where `placement: memory` asks for it,
    the node's memory, free memory and cpus (`Reader.node_info`). The loader refuses the
    sets that place on a host that cannot be read (loadset.place_sets). `env`: where a
    sim host keeps its state (tests), else the process environment."""

    def one(uri: str) -> HostFacts | str:
        try:
            driver = drivers.connect(uri, readonly=True, env=env, call_timeout=call_timeout)
            try:
                live = driver.snapshot()
                found: dict[str, set[str]] = {}
                for dom in live.domains.values():
                    name = dict(dom.owner.labels).get(SET_LABEL) if dom.owner else None
                    if name is not None:
                        found.setdefault(name, set()).add(dom.name)
                return HostFacts(instances={k: frozenset(v) for k, v in found.items()},
                                 node=driver.node_info() if asked[uri] else None)
            finally:
                driver.close()
        except VirtctlError as exc:  # unreachable, refused: this host only
            return str(exc).splitlines()[0] if str(exc) else "failed"
        except Exception as exc:  # noqa: BLE001 (one host's bug must not sink the others)
            return f"{type(exc).__name__}: {exc}"

    uris = sorted(asked)
    if len(uris) <= 1 or parallel <= 1:
        return {uri: one(uri) for uri in uris}
    with ThreadPoolExecutor(max_workers=min(parallel, len(uris))) as pool:
        return dict(zip(uris, pool.map(one, uris), strict=True))
