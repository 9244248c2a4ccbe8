"""The functional core stays pure: planning and converter modules import no I/O, clock,
randomness or hypervisor library (STYLE.md point 1). Checked on the source, by ast."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[4] / "virtctl"
PURE = sorted(
    [PACKAGE / "reconciler" / "plan" / f"{name}.py"
     for name in ("essence", "diff", "identity", "actions", "plan", "plan_network",
                  "steps", "classify")]
    + [PACKAGE / "reconciler" / "load" / "validate.py"]
    + list((PACKAGE / "converters").rglob("*.py"))
    + [PACKAGE / "render" / "export_storage.py", PACKAGE / "render" / "storage.py"]
    + [PACKAGE / "checkpoints.py"]
    + [PACKAGE / "reconciler" / "checkpoint" / f"{name}.py" for name in ("actions", "planning")]
)
# DomainSet placement and the plan's set members (issue 24): pure as the planner.
PURE += [PACKAGE / "reconciler" / "load" / "placement.py",
         PACKAGE / "reconciler" / "plan" / "members.py"]
FORBIDDEN = {"os", "time", "subprocess", "libvirt", "random", "socket", "secrets", "shutil"}
# Relative imports that would reach the imperative shell.
FORBIDDEN_INTERNAL = {"drivers", "cli", "api"}


def impure_imports(source: str, *, package: str) -> list[str]:
    """Forbidden modules imported anywhere in `source` (top level or inside functions)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against the package path
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(parts[1:] + ([node.module] if node.module else []))
                names = [module] + [f"{module}.{a.name}".lstrip(".") for a in node.names]
                if any(n.split(".")[0] in FORBIDDEN_INTERNAL for n in names if n):
                    found.append(f"virtctl.{names[0] or names[1]}")
                continue
            names = [node.module or ""]
        else:
            continue
        found += [n for n in names if n.split(".")[0] in FORBIDDEN]
    return found


@pytest.mark.parametrize("path", [pytest.param(p, id=p.relative_to(PACKAGE).as_posix())
                                  for p in PURE])
def test_pure_module_imports_no_side_effects(path: Path) -> None:
    package = "virtctl." + path.parent.relative_to(PACKAGE).as_posix().replace("/", ".")
    assert impure_imports(path.read_text(), package=package) == []


def test_the_pure_module_list_is_not_empty() -> None:
    assert len(PURE) >= 7 and all(p.exists() for p in PURE)


@pytest.mark.parametrize(("source", "expected"), [
    pytest.param("import os", ["os"], id="import"),
    pytest.param("import os.path as p", ["os.path"], id="submodule-alias"),
    pytest.param("from time import monotonic", ["time"], id="from-import"),
    pytest.param("def f():\n    import random\n", ["random"], id="nested-import"),
    pytest.param("import libvirt, json", ["libvirt"], id="one-of-several"),
    pytest.param("from ..drivers.sim import SimDriver", ["virtctl.drivers.sim"],
                 id="relative-into-drivers"),
    pytest.param("from .. import api", ["virtctl.api"], id="relative-package-api"),
    pytest.param("from ..errors import SpecError\nimport re\nimport hashlib", [],
                 id="allowed"),
])
def test_the_checker_itself_flags_forbidden_imports(source: str, expected: list[str]) -> None:
    assert impure_imports(source, package="virtctl.reconciler") == expected
