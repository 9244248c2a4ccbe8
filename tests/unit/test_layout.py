"""The package layout stays what docs/architecture.md says (issue 23): the import-linter
contracts of pyproject.toml hold, no module imports another's `_private` names, no
folder grows past about a dozen modules, and `virtctl --help`, `get` and a no-op apply
import only what they use (checked on sys.modules in a fresh interpreter).
"""

from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "virtctl"
MAX_MODULES = 13  # per folder, __init__ and __main__ not counted ("about 12")


# -- import-linter ----------------------------------------------------------------------


def _lint_imports() -> str:
    found = shutil.which("lint-imports", path=str(Path(sys.executable).parent)) or \
        shutil.which("lint-imports")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("lint-imports is missing: install the test extra (pip install "
                        "-e '.[test]'), which has import-linter")
        pytest.skip("import-linter not installed (pip install -e '.[test]')")
    return found


def test_import_contracts_hold() -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run([_lint_imports(), "--no-cache"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 broken" in done.stdout


# -- private names ----------------------------------------------------------------------


def _module_of(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _resolve(node: ast.ImportFrom, module: str, is_package: bool) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - node.level + 1]
    return ".".join(base + ([node.module] if node.module else []))


def private_imports(source: str, module: str, *, is_package: bool = False) -> list[str]:
    """`from virtctl.x import _name` and `x._name` (x an imported virtctl module) in
    `source`: another module's private names, which should have a public home."""
    found: list[str] = []
    tree = ast.parse(source)
    modules: set[str] = set()  # local names bound to virtctl modules
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            origin = _resolve(node, module, is_package)
            if origin != "virtctl" and not origin.startswith("virtctl."):
                continue
            for alias in node.names:
                if alias.name.startswith("_") and not alias.name.startswith("__"):
                    found.append(f"{origin}.{alias.name}")
                modules.add(alias.asname or alias.name)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("virtctl"):
                    modules.add(alias.asname or alias.name.split(".")[0])
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and node.attr.startswith("_")
                and not node.attr.startswith("__") and isinstance(node.value, ast.Name)
                and node.value.id in modules):
            found.append(f"{node.value.id}.{node.attr}")
    return found


@pytest.mark.parametrize("path", [pytest.param(p, id=p.relative_to(PACKAGE).as_posix())
                                  for p in sorted(PACKAGE.rglob("*.py"))])
def test_no_module_imports_private_names(path: Path) -> None:
    assert private_imports(path.read_text(), _module_of(path),
                           is_package=path.name == "__init__.py") == []


@pytest.mark.parametrize(("source", "expected"), [
    pytest.param("from .load import _connect", ["virtctl.reconciler.load.load._connect"],
                 id="relative"),
    pytest.param("def f():\n    from virtctl.cli.commands import _load\n",
                 ["virtctl.cli.commands._load"], id="nested-absolute"),
    pytest.param("from . import load\nload._flag(1)", ["load._flag"], id="attribute"),
    pytest.param("from .load import load_specs\nfrom virtctl import __version__", [],
                 id="public-and-dunder"),
    pytest.param("from os import _exit\nimport re\nre._pattern_type", [], id="not-ours"),
])
def test_the_private_checker_itself(source: str, expected: list[str]) -> None:
    assert private_imports(source, "virtctl.reconciler.load.x") == expected


# -- room sizes -------------------------------------------------------------------------


def test_no_folder_holds_more_than_about_a_dozen_modules() -> None:
    crowded = {}
    for folder in [PACKAGE, *(p for p in PACKAGE.rglob("*") if p.is_dir())]:
        modules = [p.name for p in folder.glob("*.py")
                   if p.name not in ("__init__.py", "__main__.py")]
        if len(modules) > MAX_MODULES:
            crowded[folder.relative_to(REPO).as_posix()] = len(modules)
    assert crowded == {}


def test_every_package_says_what_it_holds() -> None:
    bare = [p.relative_to(REPO).as_posix() for p in PACKAGE.rglob("__init__.py")
            if p.parent.name != "__pycache__" and not ast.get_docstring(ast.parse(p.read_text()))]
    assert bare == []


# -- a fast start -----------------------------------------------------------------------

# Never needed to print help or list objects, nor by a run that finds nothing to do.
HEAVY = (
    "virtctl.reconciler.load.load", "virtctl.reconciler.plan.plan",
    "virtctl.reconciler.plan.plan_storage", "virtctl.reconciler.apply.apply",
    "virtctl.reconciler.apply.applystorage", "virtctl.drivers.libvirt",
    "virtctl.converters.xen", "virtctl.converters.yaml", "virtctl.render.export",
    "virtctl.watch", "virtctl.coord.etcd", "yaml", "jsonschema", "urllib.request",
    "watchdog", "http.server", "libvirt",
)
PROBE = textwrap.dedent("""
    import contextlib, io, json, sys
    from virtctl.entry import main
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            code = main(sys.argv[1:])
    except SystemExit as exc:
        code = exc.code
    print(json.dumps({"code": code, "output": out.getvalue(), "modules": sorted(sys.modules)}))
""")


def _imported(tmp_path: Path, *argv: str) -> tuple[int, str, set[str]]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "VIRTCTL_STATE_DIR": str(tmp_path / "state"),
           "XDG_CACHE_HOME": str(tmp_path / "cache"), "VIRTCTL_CONNECT": "sim:///layout"}
    env.pop("VIRTCTL_CACHE", None)
    env.pop("VIRTCTL_COORDINATION", None)
    done = subprocess.run([sys.executable, "-c", PROBE, *argv], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout.splitlines()[-1])
    return found["code"], found["output"], set(found["modules"])


def _heavy(modules: set[str], *, allowed: tuple[str, ...] = ()) -> list[str]:
    return sorted(m for m in modules for heavy in HEAVY
                  if (m == heavy or m.startswith(heavy + ".")) and heavy not in allowed)


def test_help_imports_nothing_heavy(tmp_path: Path) -> None:
    code, output, modules = _imported(tmp_path, "--help")
    assert code == 0 and "apply" in output
    assert _heavy(modules) == []
    assert "virtctl.drivers.sim.driver" not in modules


def test_get_imports_the_driver_and_the_renderer_only(tmp_path: Path) -> None:
    code, _, modules = _imported(tmp_path, "get", "domains")
    assert code == 0
    assert "virtctl.drivers.sim.driver" in modules  # what it uses is there
    assert _heavy(modules) == []


def test_a_no_op_apply_imports_no_planner_and_no_applier(tmp_path: Path) -> None:
    specs = tmp_path / "specs"
    specs.mkdir()
    (specs / "web.yaml").write_text(
        "kind: Domain\nname: layout-web\ntype: qemu\nmemory: 64MiB\nvcpus: 1\n"
        "os: {type: hvm, arch: x86_64}\nstate: shutoff\n")
    first, _, changed = _imported(tmp_path, "apply", "-f", str(specs))
    assert first == 0
    # Control: a run with something to do imports the planner and the applier.
    assert {"virtctl.reconciler.plan.plan", "virtctl.reconciler.apply.apply"} <= changed
    second, _, _ = _imported(tmp_path, "apply", "-f", str(specs))  # in sync: memo saved
    third, output, modules = _imported(tmp_path, "apply", "-f", str(specs))
    assert (second, third) == (0, 0) and "No changes" in output
    # The loader and its YAML readers are there (the specs are read); no planner, no
    # applier, no storage, no download, no schema validation (the spec cache's files).
    assert _heavy(modules, allowed=("virtctl.reconciler.load.load", "virtctl.converters.yaml",
                                    "yaml")) == []
