"""Reading the facts DomainSet placement needs from the hosts (loadset.place_sets).

Side effects: one read-only connection per host, concurrently (bounded). For each
host: the managed guests that carry a `domainset` label (where each set's instances
live, from the owner mark), and, where `placement: memory` asks for it, the node's
memory, free memory and cpus (`Reader.node_info`). A host that cannot be read gives
the reason instead; the loader refuses the sets that place on it.
"""

from __future__ import annotations

from collections.abc import Mapping

from . import drivers
from .errors import VirtctlError
from .hosts import run_per_host
from .model import SET_LABEL
from .reconciler.placement import HostFacts


def read_facts(asked: Mapping[str, bool], *, call_timeout: float | None = None,
               parallel: int = 4) -> dict[str, HostFacts | str]:
    """Facts per host URI of `asked` (URI -> whether its node facts are needed), or why
    the host could not be read."""

    def one(uri: str, node: bool) -> HostFacts:
        driver = drivers.connect(uri, readonly=True, call_timeout=call_timeout)
        try:
            live = driver.snapshot()
            found: dict[str, set[str]] = {}
            for dom in live.domains.values():
                name = dict(dom.owner.labels).get(SET_LABEL) if dom.owner else None
                if name is not None:
                    found.setdefault(name, set()).add(dom.name)
            return HostFacts(instances={k: frozenset(v) for k, v in found.items()},
                             node=driver.node_info() if node else None)
        finally:
            driver.close()

    out: dict[str, HostFacts | str] = {}
    for outcome in run_per_host(asked, one, parallel=parallel):
        if outcome.value is not None:
            out[outcome.uri] = outcome.value
        else:
            error = outcome.error or VirtctlError("no answer")
            out[outcome.uri] = str(error).splitlines()[0] if str(error) else "failed"
    return out
