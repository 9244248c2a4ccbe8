"""A YAML loader that refuses a key given twice in one mapping. Pure.

YAML itself keeps the last of two equal keys silently (`vcpus: 2` then `vcpus: 1` is one
vcpu), so a spec could say two things and mean one; every spec file (the loader) and
every file `convert` reads goes through this loader. Keys are compared as YAML compares
them, by value (`1` and `'1'` differ; `yes` and `true` do not). A merge key (`<<: *base`)
may still be overridden: that is what it is for. Each node is walked once, so anchors and
aliases cost nothing more (the alias-bomb limit is limits.py's).
"""

from __future__ import annotations

from typing import Any

import yaml

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class DuplicateKey(yaml.YAMLError):
    """A mapping names one key twice: YAML would keep the last value silently."""

    def __init__(self, key: str, first: int, mark: Any, path: str) -> None:
        super().__init__(key)
        self.problem = (f"key {key!r} is given twice (first at line {first}); YAML would "
                        "keep only the last value: remove one")
        self.problem_mark = mark
        self.path = path


class StrictLoader(_Loader):  # type: ignore[misc,valid-type]
    """The safe loader, refusing a key given twice in one mapping at any depth (merge
    keys `<<` may still be overridden: that is what they are for)."""

    def construct_document(self, node: yaml.Node) -> Any:
        self._refuse_duplicate_keys(node)
        return super().construct_document(node)

    def _refuse_duplicate_keys(self, top: yaml.Node) -> None:
        seen_nodes: set[int] = set()  # each node once: aliases are not walked again
        stack: list[tuple[yaml.Node, str]] = [(top, "")]
        while stack:
            node, path = stack.pop()
            if id(node) in seen_nodes:
                continue
            seen_nodes.add(id(node))
            if isinstance(node, yaml.SequenceNode):
                stack.extend((item, f"{path}[{i}]") for i, item in enumerate(node.value))
            elif isinstance(node, yaml.MappingNode):
                keys: dict[Any, int] = {}
                for key_node, value_node in node.value:
                    if not isinstance(key_node, yaml.ScalarNode) \
                            or key_node.tag == "tag:yaml.org,2002:merge":
                        continue
                    key = self.construct_object(key_node)
                    here = f"{path}.{key_node.value}" if path else str(key_node.value)
                    try:
                        first = keys.get(key)
                    except TypeError:  # an unhashable key: the constructor reports it
                        continue
                    if first is not None:
                        raise DuplicateKey(str(key_node.value), first,
                                           key_node.start_mark, here)
                    keys[key] = key_node.start_mark.line + 1
                    stack.append((value_node, here))
