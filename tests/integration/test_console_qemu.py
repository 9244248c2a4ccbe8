"""`virtctl console` on qemu:///system (issue 24): the serial console over libvirt's
stream API. A tiny guest with a pty serial console; the console is opened, the guest
is asked to power off (ACPI; asked again until its acpid answers) and prints so on its
console, which virtctl passes through; the guest ends, the stream closes, the command
exits 0. Stopped guests are refused with a clear message."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path


from tests.contract.support import PREFIX, require_connection
from tests.integration.guestos import domain_xml, prepare_guest, remove_guest, serial_xml

URI = "qemu:///system"
REPO = Path(__file__).resolve().parents[2]
PTY = ("<serial type='pty'><target port='0'/></serial>"
       "<console type='pty'><target type='serial' port='0'/></console>")


def test_console_passes_the_guests_serial_output_and_ends_with_it(tmp_path: Path) -> None:
    require_connection(URI)
    import libvirt

    name = f"{PREFIX}con-{secrets.token_hex(2)}"
    files = prepare_guest(name)
    conn = libvirt.open(URI)
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTCTL_CONNECT",
                                                            "LIBVIRT_DEFAULT_URI")}
    env.update(VIRTCTL_STATE_DIR=str(tmp_path / "state"), PYTHONPATH=str(REPO))
    try:
        dom = conn.defineXML(domain_xml(files, memory_mib=128).replace(serial_xml(files), PTY))
        stopped = subprocess.run([sys.executable, "-m", "virtctl", "-c", URI, "console", name],
                                 capture_output=True, text=True, env=env, timeout=60,
                                 stdin=subprocess.DEVNULL, check=False)
        assert stopped.returncode == 1 and "is not running" in stopped.stderr
        dom.create()
        # stdin a pipe held open: the console reads keys from it until the guest ends.
        proc = subprocess.Popen([sys.executable, "-m", "virtctl", "-c", URI, "console", name],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, env=env)
        seen = bytearray()
        def pump() -> None:
            assert proc.stdout is not None
            while chunk := proc.stdout.read1(4096):
                seen.extend(chunk)

        reader = threading.Thread(target=pump, daemon=True)
        reader.start()
        deadline = time.monotonic() + 180  # TCG boot on a busy 2-core machine
        while b"power button" not in seen and time.monotonic() < deadline:
            try:
                dom.shutdown()  # ignored until the guest's acpid runs: ask again
            except libvirt.libvirtError:
                pass
            time.sleep(2)
        assert b"power button" in seen, bytes(seen[-2000:])
        assert proc.wait(timeout=120) == 0
        assert b"Escape character is ^]" in (proc.stderr.read() if proc.stderr else b"")
    finally:
        remove_guest(conn, name)
        conn.close()
        shutil.rmtree(files.directory, ignore_errors=True)


def test_the_escape_key_ends_the_session_and_the_guest_keeps_running(
        tmp_path: Path) -> None:
    """Through a pty, as a user at a terminal: once the greeting shows, Ctrl+] (0x1d)
    leaves with exit 0, the terminal gets its modes back, and the guest runs on."""
    require_connection(URI)
    import libvirt
    import pty
    import select
    import termios

    name = f"{PREFIX}esc-{secrets.token_hex(2)}"
    files = prepare_guest(name)
    conn = libvirt.open(URI)
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTCTL_CONNECT",
                                                            "LIBVIRT_DEFAULT_URI")}
    env.update(VIRTCTL_STATE_DIR=str(tmp_path / "state"), PYTHONPATH=str(REPO))
    master, slave = pty.openpty()
    before = termios.tcgetattr(slave)
    assert before[3] & termios.ICANON and before[3] & termios.ECHO  # a cooked terminal
    try:
        dom = conn.defineXML(domain_xml(files, memory_mib=128).replace(serial_xml(files), PTY))
        dom.create()
        proc = subprocess.Popen([sys.executable, "-m", "virtctl", "-c", URI, "console", name],
                                stdin=slave, stdout=slave, stderr=slave, env=env,
                                start_new_session=True)
        seen = bytearray()
        deadline = time.monotonic() + 120
        while b"Escape character is ^]" not in seen and time.monotonic() < deadline:
            if proc.poll() is not None:
                break
            if select.select([master], [], [], 0.5)[0]:
                seen.extend(os.read(master, 4096))
        assert b"Escape character is ^]" in seen, bytes(seen[-2000:])
        # Raw mode is on before the greeting shows: the key needs no newline.
        assert not termios.tcgetattr(slave)[3] & termios.ICANON
        os.write(master, b"\x1d")
        assert proc.wait(timeout=60) == 0
        after = termios.tcgetattr(slave)
        assert after[3] & termios.ICANON and after[3] & termios.ECHO  # modes restored
        state = dom.state()[0]
        assert state == libvirt.VIR_DOMAIN_RUNNING, state
        # And the console opens again: the session left, nothing held it.
        again = subprocess.Popen([sys.executable, "-m", "virtctl", "-c", URI, "console",
                                  name], stdin=slave, stdout=slave, stderr=slave, env=env,
                                 start_new_session=True)
        seen.clear()
        deadline = time.monotonic() + 120
        while b"Escape character is ^]" not in seen and time.monotonic() < deadline:
            if again.poll() is not None:
                break
            if select.select([master], [], [], 0.5)[0]:
                seen.extend(os.read(master, 4096))
        assert b"Escape character is ^]" in seen, bytes(seen[-2000:])
        os.write(master, b"\x1d")
        assert again.wait(timeout=60) == 0
        assert dom.isActive()
    finally:
        os.close(master)
        os.close(slave)
        remove_guest(conn, name)
        conn.close()
        shutil.rmtree(files.directory, ignore_errors=True)
