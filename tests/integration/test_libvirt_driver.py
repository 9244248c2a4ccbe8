"""The libvirt driver's own behaviour beyond the shared contract (tests/contract).

Error translation, the missing-binding message, read-only refusals made before libvirt
is called, event translation, connection failures, and NVRAM kept on undefine (a real
UEFI guest on qemu:///system). Outside CI these skip when libvirt is unavailable; in CI
they must run.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.contract.support import (
    Factory,
    libvirt_module,
    purge_libvirt,
    require_connection,
    unavailable,
)
from virtctl.drivers import Driver, connect
from virtctl.drivers.base import Event, EventType
from virtctl.drivers.libvirt.errors import INSTALL_HINT, load_libvirt, translate
from virtctl.drivers.libvirt.events import domain_event, network_event
from virtctl.errors import DriverError, ErrorCode, ErrorDomain, TransientError
from virtctl.model import DomainState, Kind

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def libvirt() -> Any:
    return libvirt_module()


class FakeLibvirtError(Exception):
    """Stands in for a libvirtError with a chosen number and error domain."""

    def __init__(self, number: int, domain: int, message: str) -> None:
        super().__init__(message)
        self.number, self.domain, self.message = number, domain, message

    def get_error_code(self) -> int:
        return self.number

    def get_error_domain(self) -> int:
        return self.domain

    def get_error_message(self) -> str:
        return self.message


@pytest.mark.parametrize(
    ("number", "domain", "transient", "code"),
    [
        pytest.param("NO_DOMAIN", "QEMU", False, ErrorCode.NO_SUCH_DOMAIN, id="no-domain"),
        pytest.param("NO_NETWORK", "NETWORK", False, ErrorCode.NO_SUCH_NETWORK, id="no-network"),
        pytest.param("OPERATION_INVALID", "QEMU", False, ErrorCode.OPERATION_INVALID,
                     id="op-invalid"),
        pytest.param("OPERATION_DENIED", "NONE", False, ErrorCode.OPERATION_INVALID,
                     id="read-only"),
        pytest.param("CONFIG_UNSUPPORTED", "QEMU", False, ErrorCode.CONFIG_UNSUPPORTED,
                     id="config"),
        pytest.param("XML_ERROR", "XML", False, ErrorCode.INVALID_SPEC, id="xml"),
        pytest.param("OPERATION_FAILED", "QEMU", False, ErrorCode.OPERATION_FAILED, id="failed"),
        pytest.param("NO_CONNECT", "NONE", True, ErrorCode.CONNECTION, id="no-connect"),
        pytest.param("RPC", "RPC", True, ErrorCode.CONNECTION, id="rpc"),
        pytest.param("SYSTEM_ERROR", "RPC", True, ErrorCode.CONNECTION, id="eof"),
        pytest.param("INTERNAL_ERROR", "RPC", True, ErrorCode.CONNECTION, id="socket-closed"),
        pytest.param("SYSTEM_ERROR", "STORAGE", False, ErrorCode.OPERATION_FAILED,
                     id="errno-elsewhere"),
        pytest.param("OPERATION_TIMEOUT", "QEMU", True, ErrorCode.TIMEOUT, id="timeout"),
    ],
)  # fmt: skip
def test_libvirt_errors_map_to_virtctl_errors(
    libvirt: Any, number: str, domain: str, transient: bool, code: ErrorCode
) -> None:
    value = getattr(libvirt, f"VIR_ERR_{number}")
    raw = FakeLibvirtError(value, getattr(libvirt, f"VIR_FROM_{domain}"), "libvirt says no")
    error = translate(libvirt, raw)
    assert isinstance(error, TransientError) is transient
    assert (error.code, error.domain, error.driver_code, error.message) == (
        code,
        ErrorDomain.LIBVIRT,
        value,
        "libvirt says no",
    )


@pytest.mark.parametrize(
    ("qemu_said", "stale"),
    [
        pytest.param("unable to execute QEMU command 'blockdev-remove-medium': Tray of "
                     "device 'ide0-1-0' is not open", True, id="remove"),
        pytest.param("unable to execute QEMU command 'blockdev-insert-medium': Tray of "
                     "the device is not open", True, id="insert"),
        pytest.param("unable to execute QEMU command 'blockdev-open-tray': Device "
                     "'ide0-1-0' is locked", False, id="other"),
    ],
)  # fmt: skip
def test_a_stale_cdrom_tray_is_refused_at_once_saying_how_to_recover(
    libvirt: Any, monkeypatch: pytest.MonkeyPatch, qemu_said: str, stale: bool
) -> None:
    # libvirt 9.0 wedged on a tray the guest closed (docs/libvirt-driver.md): asking
    # again cannot help, so one call, and the error says what clears it.
    message = f"internal error: {qemu_said}"

    class Refusal(libvirt.libvirtError):
        def get_error_code(self) -> int:
            return libvirt.VIR_ERR_INTERNAL_ERROR

        def get_error_domain(self) -> int:
            return libvirt.VIR_FROM_QEMU

        def get_error_message(self) -> str:
            return message

    calls: list[int] = []

    class Guest:
        def updateDeviceFlags(self, _xml: str, flags: int) -> None:
            calls.append(flags)
            raise Refusal(message)

    driver = connect("test:///default")
    try:
        monkeypatch.setattr(driver, "_lookup", lambda _kind, _name: Guest())
        with pytest.raises(DriverError) as caught:
            driver.update_device("test", "<disk device='cdrom'/>")
    finally:
        driver.close()
    assert calls == [libvirt.VIR_DOMAIN_AFFECT_LIVE]
    assert message in caught.value.message
    assert ("restart of libvirtd" in caught.value.message) is stale
    assert caught.value.driver_code == libvirt.VIR_ERR_INTERNAL_ERROR


def test_an_error_libvirt_gave_no_reason_for_says_so(libvirt: Any) -> None:
    class Unexplained(FakeLibvirtError):
        def get_error_code(self) -> Any:
            return None

        def get_error_domain(self) -> Any:
            return None

    error = translate(libvirt, Unexplained(0, 0, "virStoragePoolUndefine() failed"))
    assert error.message == "virStoragePoolUndefine() failed (libvirt gave no reason)"
    assert (error.code, error.driver_code) == (ErrorCode.OPERATION_FAILED, None)


def test_missing_binding_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "libvirt", None)
    with pytest.raises(DriverError) as caught:
        load_libvirt()
    assert INSTALL_HINT in caught.value.message and caught.value.domain is ErrorDomain.LIBVIRT


def test_cli_without_binding_says_how_to_install(tmp_path: Path) -> None:
    shadow = tmp_path / "shadow"
    shadow.mkdir()
    (shadow / "libvirt.py").write_text("raise ImportError('No module named libvirt')\n")
    env = {**os.environ, "PYTHONPATH": f"{shadow}:{REPO}", "VIRTCTL_STATE_DIR": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, "-m", "virtctl", "-c", "test:///default", "get", "domains"],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=60,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 1
    assert INSTALL_HINT in result.stderr and "Traceback" not in result.stderr


def test_read_only_refuses_before_calling_libvirt(libvirt: Any) -> None:
    reader = connect("test:///default", readonly=True)
    try:
        with pytest.raises(DriverError) as caught:
            reader.destroy(Kind.DOMAIN, "test")
        # Our refusal names the connection; libvirt's would say "read only access prevents".
        assert "open read-only" in caught.value.message and caught.value.driver_code is None
        assert reader.snapshot().domains["test"].state is DomainState.RUNNING
    finally:
        reader.close()


def test_driver_satisfies_the_protocol(libvirt: Any) -> None:
    driver = connect("test:///default")
    try:
        assert isinstance(driver, Driver)
    finally:
        driver.close()


def test_unreachable_host_is_a_transient_connection_error(libvirt: Any) -> None:
    # Port 1 on loopback: nothing listens there, so the connection is refused at once.
    with pytest.raises(TransientError) as caught:
        connect("qemu+tcp://127.0.0.1:1/system")
    assert caught.value.code is ErrorCode.CONNECTION
    assert "qemu+tcp://127.0.0.1:1/system" in caught.value.message


@pytest.mark.parametrize(
    ("family", "event", "detail", "expected"),
    [
        pytest.param("DOMAIN", "DEFINED", "DEFINED_ADDED", (EventType.DEFINED, "added"),
                     id="defined"),
        pytest.param("DOMAIN", "STOPPED", "STOPPED_DESTROYED", (EventType.STOPPED, "destroyed"),
                     id="destroyed"),
        pytest.param("DOMAIN", "STOPPED", "STOPPED_SHUTDOWN", (EventType.STOPPED, "shutdown"),
                     id="shut-off"),
        pytest.param("DOMAIN", "SUSPENDED", "SUSPENDED_PAUSED", (EventType.SUSPENDED, "paused"),
                     id="paused"),
        pytest.param("DOMAIN", "SHUTDOWN", "SHUTDOWN_GUEST", (EventType.CHANGED, "shutdown-guest"),
                     id="shutting-down"),
        pytest.param("DOMAIN", "CRASHED", "CRASHED_PANICKED",
                     (EventType.STOPPED, "crashed-panicked"), id="crashed"),
        pytest.param("NETWORK", "STARTED", None, (EventType.STARTED, "started"),
                     id="net-started"),
        pytest.param("NETWORK", "UNDEFINED", None, (EventType.UNDEFINED, "undefined"),
                     id="net-undefined"),
    ],
)  # fmt: skip
def test_lifecycle_events_translate(
    libvirt: Any, family: str, event: str, detail: str | None, expected: tuple[EventType, str]
) -> None:
    number = getattr(libvirt, f"VIR_{family}_EVENT_{event}")
    detail_number = getattr(libvirt, f"VIR_{family}_EVENT_{detail}") if detail else 0
    translate_event = domain_event if family == "DOMAIN" else network_event
    kind = Kind.DOMAIN if family == "DOMAIN" else Kind.NETWORK
    event_type, text = expected
    assert translate_event(libvirt, "x", number, detail_number) == Event(
        event_type, kind, "x", text
    )


# NVRAM: a UEFI guest on qemu:///system.

OVMF_CODE = Path("/usr/share/OVMF/OVMF_CODE_4M.fd")
OVMF_VARS = Path("/usr/share/OVMF/OVMF_VARS_4M.fd")


@pytest.fixture
def qemu_driver() -> Iterator[Driver]:
    require_connection("qemu:///system")
    if not (OVMF_CODE.exists() and OVMF_VARS.exists()):
        unavailable("OVMF firmware is missing (apt-get install ovmf)")
    driver = connect("qemu:///system")
    try:
        yield driver
    finally:
        driver.close()
        purge_libvirt("qemu:///system")


def test_undefine_keeps_nvram(qemu_driver: Driver, tmp_path: Path) -> None:
    name = Factory().name()
    nvram = Path(f"/var/lib/libvirt/qemu/nvram/{name}_VARS.fd")
    xml = (
        f"<domain type='qemu'><name>{name}</name><memory unit='MiB'>64</memory>"
        "<os><type arch='x86_64' machine='pc'>hvm</type>"
        f"<loader readonly='yes' type='pflash'>{OVMF_CODE}</loader>"
        f"<nvram template='{OVMF_VARS}'>{nvram}</nvram></os>"
        "<features><acpi/></features></domain>"
    )
    try:
        qemu_driver.define(Kind.DOMAIN, xml)
        qemu_driver.start(Kind.DOMAIN, name)  # libvirt creates the NVRAM from the template
        qemu_driver.destroy(Kind.DOMAIN, name)
        assert nvram.exists()
        qemu_driver.undefine(Kind.DOMAIN, name)
        assert name not in qemu_driver.snapshot().domains
        assert nvram.exists(), "undefine must keep the guest's NVRAM"
    finally:
        nvram.unlink(missing_ok=True)


def test_capabilities_are_asked_once_per_connection(libvirt: Any) -> None:
    driver = connect("test:///default")
    try:
        calls: list[int] = []
        real = driver._conn.getCapabilities  # type: ignore[attr-defined]

        def counted() -> str:
            calls.append(1)
            return str(real())

        driver._conn.getCapabilities = counted  # type: ignore[attr-defined]
        first = driver.capabilities()
        assert driver.capabilities() == first and len(calls) == 1
        # A reconnect brings a new connection, which is asked again.
        driver._replace(libvirt.open("test:///default"))  # type: ignore[attr-defined]
        again: list[int] = []
        fresh = driver._conn.getCapabilities  # type: ignore[attr-defined]
        driver._conn.getCapabilities = lambda: again.append(1) or str(fresh())  # type: ignore[attr-defined]
        assert driver.capabilities() == first and (len(calls), len(again)) == (1, 1)
    finally:
        driver.close()


def test_define_asks_libvirt_to_validate_against_its_schema(libvirt: Any) -> None:
    # Without VALIDATE libvirt drops an element it does not know without a word; the
    # declared setting would silently never apply.
    driver = connect("test:///default")
    name = Factory().name()
    try:
        with pytest.raises(DriverError) as caught:
            driver.define(Kind.DOMAIN, f"<domain type='test'><name>{name}</name>"
                          "<memory>1024</memory><os><type>hvm</type></os>"
                          "<devices><bogus/></devices></domain>")
        assert "bogus" in caught.value.message or "validate" in caught.value.message.lower()
        assert name not in driver.snapshot().domains
        with pytest.raises(DriverError):
            driver.define(Kind.NETWORK, f"<network><name>{name}</name><bogus/></network>")
        assert name not in driver.snapshot().networks
    finally:
        driver.close()
