"""The CI setup scripts on a fresh machine (issue 20, E).

`ci/test.sh` is run for real, in a copy of `ci/`, with the system commands it reaches
(apt-get, dpkg-query, python3, virsh, the daemons, chown...) replaced by stubs that log
their arguments: what a fresh Debian 12 needs before `python3 -m venv` (python3-venv,
python3-dev) is installed first, and a second run on a machine that has everything
installs nothing. `kvm_group_access` (ci/install-libvirt.sh) is run on files of the
test's own in place of /dev/kvm; and in CI, the machine's /dev/kvm must be open to the
kvm group (libvirt re-probes QEMU on every capabilities lookup otherwise).
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from tests.contract.support import unavailable

CI_DIR = Path(__file__).resolve().parents[2] / "ci"

# A stub logs `NAME ARGS...` to $STUB_LOG; some answer as the real command would.
STUB = """#!/usr/bin/env bash
name=$(basename "$0")
printf '%s\\n' "$name $*" >> "$STUB_LOG"
case "$name" in
    id) echo 0 ;;
    dpkg-query) [ "${STUB_INSTALLED:-0}" = 1 ] && printf 'install ok installed' ;;
    python3)
        if [ "${1:-} ${2:-}" = "-m venv" ]; then
            mkdir -p "$3/bin" && : > "$3/bin/activate" && cp "$0" "$3/bin/python"
        fi ;;
    python)
        [ "${1:-} ${2:-}" = "-c import libvirt" ] && exit 1 ;;
    virsh) echo "Compiled against library: libvirt 9.0.0" ;;
esac
exit 0
"""
STUBBED = ("id", "dpkg-query", "apt-get", "python3", "python", "virsh", "virtlogd",
           "libvirtd", "getent", "addgroup", "chown", "chmod", "lint-imports")


GUEST_TESTS = ("tests/integration/test_a_qemu.py", "tests/integration/test_b_qemu.py")


def dry_run(tmp_path: Path, *, installed: bool) -> list[str]:
    """Run a copy of ci/test.sh with stubbed commands; the commands it ran, in order."""
    repo = tmp_path / "repo"
    (repo / "ci").mkdir(parents=True, exist_ok=True)
    for script in ("test.sh", "install-libvirt.sh"):
        shutil.copy(CI_DIR / script, repo / "ci" / script)
    (repo / "ci" / "fetch-schemas-11.3.sh").write_text("true\n")
    (repo / "tests" / "integration").mkdir(parents=True, exist_ok=True)
    for guest_test in GUEST_TESTS:
        (repo / guest_test).write_text("")
    stubs = tmp_path / "stubs"
    stubs.mkdir(exist_ok=True)
    for name in STUBBED:
        (stubs / name).write_text(STUB)
        (stubs / name).chmod(0o755)
    log = tmp_path / "log"
    log.write_text("")
    env = {**os.environ, "PATH": f"{stubs}:{os.environ['PATH']}", "STUB_LOG": str(log),
           "STUB_INSTALLED": "1" if installed else "0",
           "KVM_DEVICE": str(tmp_path / "no-kvm-here")}
    done = subprocess.run(["bash", str(repo / "ci" / "test.sh")], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    return log.read_text().splitlines()


def test_packages_come_before_the_venv_on_a_fresh_machine(tmp_path: Path) -> None:
    calls = dry_run(tmp_path, installed=False)
    installs = [i for i, c in enumerate(calls) if c.startswith("apt-get install")]
    venv = [i for i, c in enumerate(calls) if c.startswith("python3 -m venv")]
    assert len(venv) == 1, calls
    assert installs, calls
    first = calls[installs[0]].split()
    assert {"python3-venv", "python3-dev", "libvirt-dev", "gcc", "pkg-config",
            "git", "iproute2", "qemu-utils", "etcd-server"} <= set(first)
    assert installs[0] < venv[0], calls
    # libvirt-python is built after the venv exists, with the venv's python.
    pip = [i for i, c in enumerate(calls) if c.startswith("python -m pip install")
           and "libvirt-python" in c]
    assert pip and pip[0] > venv[0], calls


def test_the_import_contracts_are_checked_before_the_tests(tmp_path: Path) -> None:
    calls = dry_run(tmp_path, installed=True)
    lint = [i for i, c in enumerate(calls) if c.startswith("lint-imports")]
    tests = [i for i, c in enumerate(calls) if c.startswith("python -m pytest")]
    assert len(lint) == 1 and len(tests) == 2 and lint[0] < min(tests), calls


def test_the_guest_tests_run_beside_the_rest_and_together_make_the_whole_suite(
    tmp_path: Path
) -> None:
    calls = [c.split() for c in dry_run(tmp_path, installed=True)
             if c.startswith("python -m pytest")]
    guests, rest = calls  # the guest tests start first, in the background
    assert sorted(a for a in guests if a.startswith("tests/")) == list(GUEST_TESTS)
    assert [a for a in rest if a.startswith("--ignore=")] == [
        f"--ignore={t}" for t in GUEST_TESTS]
    assert rest[-1] == "tests"


def test_a_second_run_installs_nothing(tmp_path: Path) -> None:
    calls = dry_run(tmp_path, installed=True)
    assert not [c for c in calls if c.startswith("apt-get")], calls
    assert any(c.startswith("python3 -m venv") for c in calls)


# -- /dev/kvm -------------------------------------------------------------------------------


def require_root() -> None:
    if os.geteuid() != 0:
        unavailable("changing a file's owner and group needs root (CI runs as root)")


def kvm_group_access(device: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-c", 'source "$1"; kvm_group_access "$2"', "_",
         str(CI_DIR / "install-libvirt.sh"), str(device)],
        capture_output=True, text=True, timeout=60, check=False)


def owner_group_mode(path: Path) -> tuple[int, str, int]:
    import grp

    st = path.stat()
    return st.st_uid, grp.getgrgid(st.st_gid).gr_name, stat.S_IMODE(st.st_mode)


def test_a_root_only_node_is_opened_to_the_kvm_group(tmp_path: Path) -> None:
    require_root()
    device = tmp_path / "kvm"
    device.write_text("")
    os.chown(device, 0, 0)
    device.chmod(0o600)
    done = kvm_group_access(device)
    assert done.returncode == 0, done.stderr
    assert owner_group_mode(device) == (0, "kvm", 0o660)
    assert "root:kvm 660" in done.stderr

    again = kvm_group_access(device)  # idempotent: nothing to do, nothing said
    assert (again.returncode, again.stderr) == (0, "")
    assert owner_group_mode(device) == (0, "kvm", 0o660)


@pytest.mark.parametrize("uid, mode", [(0, 0o666), (4242, 0o600)])
def test_a_node_others_may_open_or_root_does_not_own_is_left_alone(
    tmp_path: Path, uid: int, mode: int
) -> None:
    require_root()
    device = tmp_path / "kvm"
    device.write_text("")
    os.chown(device, uid, 0)
    device.chmod(mode)
    before = owner_group_mode(device)
    done = kvm_group_access(device)
    assert done.returncode == 0, done.stderr
    assert owner_group_mode(device) == before


def test_no_node_is_no_error(tmp_path: Path) -> None:
    done = kvm_group_access(tmp_path / "absent")
    assert done.returncode == 0, done.stderr
    assert not (tmp_path / "absent").exists()


def test_this_machines_kvm_node_is_open_to_the_kvm_group() -> None:
    """What ci/install-libvirt.sh leaves behind: without it, a define on qemu:///system
    takes a minute (the integration suites would still pass, only slowly)."""
    device = Path("/dev/kvm")
    if not device.exists():
        return  # no KVM on this machine: libvirt uses TCG and probes once
    _, group, mode = owner_group_mode(device)
    if mode & 0o006 == 0o006:
        return  # everyone may open it
    if (group, mode & 0o060) != ("kvm", 0o060):
        unavailable(f"/dev/kvm is {group} {mode:o}, not open to the kvm group: "
                    "run ci/install-libvirt.sh")
