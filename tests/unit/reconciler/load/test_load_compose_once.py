"""A YAML file of many documents is composed into nodes (for the line numbers of fields)
once per file, not once per field asked for: recomposing per field made loading a file of
N domains O(N squared)."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from virtctl.reconciler.load import load


def domains(count: int) -> str:
    return "".join(
        f"---\nkind: Domain\nname: vm{i}\ntype: kvm\nmemory: 64MiB\nstate: shutoff\n"
        f"os: {{type: hvm}}\ninterfaces:\n  - type: network\n    source: {{network: n{i}}}\n"
        for i in range(count))


def test_a_file_of_many_domains_is_composed_once(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    real = yaml.compose_all

    def counting(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(yaml, "compose_all", counting)
    text = domains(20)
    specs = load.load_text(text, source="many.yaml")
    assert len(specs) == 20
    assert len(calls) == 1
    # The lines are still each document's own: vm7's network is named on its line.
    line = next(n + 1 for n, raw in enumerate(text.splitlines()) if "network: n7}" in raw)
    vm7 = next(s for s in specs if s.name == "vm7")
    assert ("network:n7", line) in vm7.lines
