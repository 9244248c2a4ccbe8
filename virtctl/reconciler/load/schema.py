"""The packaged JSON Schema of YAML specs, its validators, and the line of a key path.

`validator(kind)` checks one YAML document; `schema_error` turns a schema error into a
`SpecError` naming the file, the line and the field path; `line_for_path` / `line_of`
find the line of a key path (`disks[1].bootOrder`) in a YAML document, recomposed only
on error. Used by load.py and loadset.py (DomainSet documents). Reads the packaged
schema; nothing else.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from functools import cache, lru_cache
from importlib import resources
from typing import TYPE_CHECKING, Any

import yaml

from ...errors import ErrorCode, Source, SpecError

if TYPE_CHECKING:
    import jsonschema

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
#: The schema's $defs entry for each kind.
DEFS = {"Domain": "domain", "Network": "network", "Hosts": "hosts",
        "StoragePool": "storagePool", "Volume": "volume", "DomainSet": "domainSet"}


@cache
def schema() -> dict[str, Any]:
    data = resources.files("virtctl").joinpath("schemas/spec.schema.json").read_text()
    loaded: dict[str, Any] = json.loads(data)
    return loaded


@cache
def validator(kind: str | None = None) -> jsonschema.protocols.Validator:
    """The schema's validator; for a known kind, one that skips the kind dispatch."""
    root = schema()
    if kind in DEFS:
        # Same $defs, no if/then on kind: a third of the validation time on large runs.
        root = dict(root, allOf=[{"$ref": f"#/$defs/{DEFS[kind]}"}])
    import jsonschema  # only when a file is not in the spec cache: 40 ms of start-up

    cls = jsonschema.validators.validator_for(root)
    validator: jsonschema.protocols.Validator = cls(root)
    return validator


def schema_error(
    error: jsonschema.ValidationError, source: str, index: int, line: int | None, text: str
) -> SpecError:
    parts = list(error.absolute_path)
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        # Name the unknown field itself, not the mapping that holds it.
        known = error.schema.get("properties", {}) if isinstance(error.schema, dict) else {}
        extra = sorted((k for k in error.instance if k not in known), key=str)
        if extra:
            parts.append(extra[0])
    elif "propertyNames" in error.absolute_schema_path and isinstance(error.instance, str):
        parts.append(error.instance)  # the key whose name is refused, not its mapping
    return SpecError(
        error.message, code=ErrorCode.SCHEMA_VIOLATION,
        source=Source(source, line_of(text, index, parts) or line, json_path(parts)),
    )


def error_rank(error: jsonschema.ValidationError) -> tuple[int, int, str]:
    # Deepest, most specific error first: it names the offending field, not its parent.
    return (-len(error.absolute_path), len(error.context or ()), error.message)


def json_path(parts: Sequence[Any] | Any) -> str:
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(document)"


def line_for_path(text: str, index: int, path: str | None) -> int | None:
    if not path:
        return None
    parts: list[Any] = []
    for token in re.findall(r"[^.\[\]]+|\[\d+\]", path):
        parts.append(int(token[1:-1]) if token.startswith("[") else token)
    return line_of(text, index, parts)


@lru_cache(maxsize=4)
def composed(text: str) -> tuple[Any, ...] | None:
    """A file's YAML node trees, composed once per file, not once per line asked for:
    every domain document asks for the lines of a few fields, and recomposing a file
    of N documents for each made loading it O(N squared) (a fleet member's catalog of
    1,000 files x 10 domains spent two thirds of its parse time here)."""
    try:
        return tuple(yaml.compose_all(text, Loader=_Loader))
    except yaml.YAMLError:
        return None


def line_of(text: str, index: int, parts: list[Any]) -> int | None:
    """The line of the node at `parts` in document `index`."""
    nodes = composed(text)
    if nodes is None:
        return None
    if index >= len(nodes) or nodes[index] is None:
        return None
    node: Any = nodes[index]
    line: int = node.start_mark.line + 1
    for part in parts:
        child = None
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                if key.value == str(part):
                    child, line = value, key.start_mark.line + 1
                    break
        elif (isinstance(node, yaml.SequenceNode) and isinstance(part, int)
              and part < len(node.value)):
            child = node.value[part]
            line = child.start_mark.line + 1
        if child is None:
            break
        node = child
    return line
