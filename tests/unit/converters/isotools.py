"""Command-line ISO readers for the ISO 9660 and cloud-init tests (isoinfo from
genisoimage, bsdtar from libarchive-tools): an independent check of what virtctl
writes. CI installs them (ci/install-libvirt.sh); there a missing one fails."""

from __future__ import annotations

import shutil
import subprocess

from tests.contract.support import unavailable


def tool(name: str) -> str:
    """The path of a command-line reader; fail in CI when missing, else skip."""
    path = shutil.which(name)
    if path is None:
        unavailable(f"{name} not found (apt-get install libarchive-tools genisoimage)")
    assert path is not None
    return path


def run(*argv: str) -> bytes:
    return subprocess.run(argv, check=True, capture_output=True, timeout=60).stdout
