"""`virtctl console NAME`: a guest's serial console over libvirt's stream API
(virDomainOpenConsole), as `virsh console` does: the terminal in raw mode, keys to the
guest, its output to the terminal, Ctrl+] (0x1d) to leave. The sim runs no guest, so it
has no console, and says so.
"""

from __future__ import annotations

import os
import select
import sys
import threading
from typing import Any, TextIO

from ..errors import ErrorCode, VirtctlError
from ..printable import printable

ESCAPE = b"\x1d"  # Ctrl+], as virsh console


def run_console(driver: Any, name: str, devname: str | None, err: TextIO,
                stdin_fd: int | None = None, stdout_fd: int | None = None) -> int:
    lv, conn = getattr(driver, "_lv", None), getattr(driver, "_conn", None)
    if lv is None or conn is None:
        raise VirtctlError(f"{driver.uri}: the sim runs no guest, so {name} has no console "
                           "(use a libvirt host: -c qemu:///system)",
                           code=ErrorCode.UNSUPPORTED)
    stdin_fd = sys.stdin.fileno() if stdin_fd is None else stdin_fd
    stdout_fd = sys.stdout.fileno() if stdout_fd is None else stdout_fd
    try:
        dom = conn.lookupByName(name)
    except lv.libvirtError:
        raise VirtctlError(f"no domain {name!r} on {driver.uri}",
                           code=ErrorCode.NO_SUCH_DOMAIN) from None
    if not dom.isActive():
        raise VirtctlError(f"{name} is not running: no console to open",
                           code=ErrorCode.OPERATION_INVALID)
    stream = conn.newStream(0)  # blocking: one thread reads it, the main one writes
    try:
        dom.openConsole(devname, stream, 0)
    except lv.libvirtError as exc:
        raise VirtctlError(f"{name}: cannot open the console: {exc.get_error_message()}",
                           code=ErrorCode.OPERATION_FAILED) from None
    # Raw mode before the greeting: a key typed once it shows (the escape key too) must
    # not wait in the line discipline for a newline, nor be flushed by going raw later.
    restore = _raw(stdin_fd)
    try:
        err.write(printable(f"Connected to {name}. Escape character is ^]") + "\r\n")
        err.flush()
        return _relay(stream, stdin_fd, stdout_fd, err)
    finally:
        restore()


def _relay(stream: Any, stdin_fd: int, stdout_fd: int, err: TextIO) -> int:
    """Guest output to `stdout_fd`, keys from `stdin_fd` to the guest, until the escape
    key, the end of stdin, or the guest's side closing."""
    done = threading.Event()

    def pump_out() -> None:
        try:
            while not done.is_set():
                data = stream.recv(4096)
                if not data or isinstance(data, int):  # -2: would block; b"": closed
                    if not data:
                        break
                    continue
                os.write(stdout_fd, data)
        except Exception:  # noqa: BLE001 - the guest went away or the stream was aborted
            pass
        finally:
            done.set()

    reader = threading.Thread(target=pump_out, daemon=True)
    reader.start()
    try:
        while not done.is_set():
            # Wake up to see the guest's side end (done) while no key comes.
            if not select.select([stdin_fd], [], [], 0.5)[0]:
                continue
            data = os.read(stdin_fd, 1024)
            if not data:
                break
            if ESCAPE in data:
                before = data.split(ESCAPE, 1)[0]
                if before:
                    stream.send(before)
                break
            stream.send(data)
    finally:
        done.set()
        try:
            stream.abort()
        except Exception:  # noqa: BLE001 - already closed by the guest's side
            pass
    err.write("\r\n")
    return 0


def _raw(fd: int) -> Any:
    """Raw mode on a terminal (keys go to the guest as typed); nothing on a pipe."""
    if not os.isatty(fd):
        return lambda: None
    import termios
    import tty

    saved = termios.tcgetattr(fd)
    tty.setraw(fd)
    return lambda: termios.tcsetattr(fd, termios.TCSADRAIN, saved)
