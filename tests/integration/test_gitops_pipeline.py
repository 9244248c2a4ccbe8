"""The pipelines shipped in contrib/ work: their virtctl steps, run as written by bash
against a sim host from a git checkout of specs/examples/, lint, plan (exit 2 is not a
failure, the plan lands in plan.txt and plan.json), deploy (recording the commit), and
plan again in sync; a broken spec fails lint. Steps that need the outside world (apt,
pip, SSH keys, posting comments) are left out; everything else runs verbatim.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from virtctl.cli.commands import build_parser

REPO = Path(__file__).resolve().parents[2]
GITLAB = REPO / "contrib" / "gitlab-ci.yml"
GITHUB = REPO / "contrib" / "github-workflow.yml"
OUTSIDE = ("apt-get", "pip install", "ssh-add", "gh pr comment", "curl ", "known_hosts",
           "venv", "PATH=")


def gitlab_jobs() -> dict[str, list[str]]:
    doc = yaml.safe_load(GITLAB.read_text())
    return {job: [line for line in doc[job]["script"] if isinstance(line, str)]
            for job in ("lint", "plan", "deploy")}


def github_jobs() -> dict[str, list[str]]:
    doc = yaml.safe_load(GITHUB.read_text())
    return {job: [step["run"] for step in doc["jobs"][job]["steps"] if "run" in step]
            for job in ("lint", "plan", "deploy")}


def runnable(block: str) -> bool:
    return not any(marker in block for marker in OUTSIDE)


def virtctl_commands(blocks: list[str]) -> list[list[str]]:
    found = []
    for block in blocks:
        for line in block.splitlines():
            for part in line.split(";"):
                command = part.split("||")[0].split(">")[0].strip()
                if command.startswith("virtctl "):
                    words = shlex.split(command)
                    found.append([w.replace("$SPECS", "specs/") for w in words[1:]])
    return found


@pytest.mark.parametrize("jobs", [gitlab_jobs, github_jobs], ids=["gitlab", "github"])
def test_every_virtctl_command_in_the_pipelines_parses(jobs: Callable[[], Any]) -> None:
    commands = [c for blocks in jobs().values() for c in virtctl_commands(blocks)]
    verbs = {c[0] for c in commands}
    assert verbs == {"validate", "diff", "apply"}
    for argv in commands:
        build_parser().parse_args(argv)  # exits (fails the test) on an unknown flag


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """A git work tree holding specs/examples/ as specs/, committed."""
    work = tmp_path / "infra"
    shutil.copytree(REPO / "specs" / "examples", work / "specs")
    for args in (["init", "-q", "-b", "main"], ["add", "-A"],
                 ["-c", "user.name=t", "-c", "user.email=t@example.org", "-c",
                  "commit.gpgsign=false", "commit", "-q", "-m", "specs"]):
        subprocess.run(["git", "-C", str(work), *args], check=True, capture_output=True)
    return work


@pytest.fixture
def shell(
    tmp_path: Path, checkout: Path
) -> Callable[[list[str]], subprocess.CompletedProcess[str]]:
    """Run a job's script blocks in order with bash -e, as CI runners do."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    shim = bin_dir / "virtctl"
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m virtctl "$@"\n')
    shim.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k not in ("LIBVIRT_DEFAULT_URI",)}
    env.update(PATH=f"{bin_dir}{os.pathsep}{env['PATH']}", PYTHONPATH=str(REPO),
               SPECS="specs/", VIRTCTL_CONNECT="sim:///ci",
               VIRTCTL_STATE_DIR=str(tmp_path / "state"), VIRTCTL_SIM_FSYNC="0")
    env.pop("PLAN_BOT_TOKEN", None)

    def run(blocks: list[str]) -> subprocess.CompletedProcess[str]:
        script = "\n".join(b for b in blocks if runnable(b))
        return subprocess.run(["bash", "-e", "-o", "pipefail", "-c", script], cwd=checkout,
                              env=env, capture_output=True, text=True, timeout=120,
                              check=False)

    return run


def host_commits(checkout: Path, shell: Callable[[list[str]], Any]) -> set[str | None]:
    got = shell(["virtctl get domains -o json > domains.json"])
    assert got.returncode == 0, got.stderr
    return {d["commit"] for d in json.loads((checkout / "domains.json").read_text())}


@pytest.mark.parametrize("jobs", [gitlab_jobs, github_jobs], ids=["gitlab", "github"])
def test_pipeline_lints_plans_deploys_and_records_the_commit(
    jobs: Callable[[], dict[str, list[str]]], checkout: Path,
    shell: Callable[[list[str]], subprocess.CompletedProcess[str]],
) -> None:
    steps = jobs()
    lint = shell(steps["lint"])
    assert lint.returncode == 0, lint.stderr

    plan = shell(steps["plan"])
    assert plan.returncode == 0, plan.stdout + plan.stderr  # diff exited 2: changes
    assert "Plan:" in (checkout / "plan.txt").read_text()
    assert json.loads((checkout / "plan.json").read_text())["inSync"] is False

    deploy = shell(steps["deploy"])
    assert deploy.returncode == 0, deploy.stdout + deploy.stderr
    head = subprocess.run(["git", "-C", str(checkout), "rev-parse", "HEAD"], check=True,
                          capture_output=True, text=True).stdout.strip()
    assert host_commits(checkout, shell) == {head}

    again = shell(steps["plan"])
    assert again.returncode == 0, again.stderr
    assert json.loads((checkout / "plan.json").read_text())["inSync"] is True


@pytest.mark.parametrize("jobs", [gitlab_jobs, github_jobs], ids=["gitlab", "github"])
def test_a_broken_spec_fails_lint_and_plan(
    jobs: Callable[[], dict[str, list[str]]], checkout: Path,
    shell: Callable[[list[str]], subprocess.CompletedProcess[str]],
) -> None:
    (checkout / "specs" / "broken.yaml").write_text("kind: Domain\nname: [not, a, name]\n")
    steps = jobs()
    lint = shell(steps["lint"])
    assert lint.returncode != 0 and "broken.yaml" in lint.stderr
    plan = shell(steps["plan"])
    assert plan.returncode != 0
