"""Fuzzing the xm/xl converters: any input ends in a result or a SpecError, and nothing runs."""

from __future__ import annotations

import contextlib
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from virtctl.converters.xen.xm import xm_to_xml, xml_to_xm
from virtctl.converters.xen.xmparse import Value, format_config
from virtctl.errors import SpecError

KEYS = ["name", "uuid", "memory", "maxmem", "vcpus", "vcpu_avail", "maxvcpus", "cpus",
        "builder", "type", "kernel", "ramdisk", "root", "extra", "cmdline", "bootloader",
        "bootargs", "boot", "pae", "acpi", "apic", "hap", "hpet", "viridian", "localtime",
        "rtc_timeoffset", "on_poweroff", "on_reboot", "on_crash", "device_model", "disk",
        "vif", "vfb", "vnc", "vncunused", "vncdisplay", "vnclisten", "sdl", "serial",
        "parallel", "usb", "usbdevice", "soundhw", "pci", "bios", "channel", "usbctrl",
        "usbdev", "vnuma", "spice", "tsc_mode", "passthrough", "max_grant_frames", "cdrom"]
WORDS = ["phy:", "file:", "tap:aio:", "tap:qcow2:", "tap2:", "/dev/x", "hda", "xvda",
         ":cdrom", "ioemu:", "w", "r", "w!", "mac=00:16:3e:00:00:01", "bridge=br0.4",
         "bridge=b:1:2", "rate=10MB/s", "model=e1000", "type=vnc", "vncdisplay=1", "hvm",
         "pvh", "pty", "tcp:h:1,server", "udp:a:1@b:2", "unix:/s", "0000:01:02.3",
         "permissive=1", "format=qcow2", "vdev=xvdb", "target=rbd:p/i:mon_host=a\\:1",
         "backendtype=phy", "devtype=cdrom", "connection=pty", "size=64", "vcpus=0-1",
         "0-3,^2", "all", "sb16", "ovmf", "destroy", "-", "=", ",", ":", "@", "\\", "\"", "'"]

text_piece = st.one_of(st.sampled_from(WORDS), st.text(max_size=8))
string_value = st.lists(text_piece, max_size=6).map("".join)
scalar = st.one_of(st.integers(min_value=-(2**70), max_value=2**70), string_value)
value: st.SearchStrategy[Value] = st.one_of(
    scalar, st.lists(scalar, max_size=4).map(tuple),
    st.lists(st.lists(string_value, max_size=3).map(tuple), max_size=3).map(tuple))
config = st.lists(st.tuples(st.sampled_from(KEYS), value), max_size=25)


def _convert(text: str, flavor: str) -> None:
    try:
        result = xm_to_xml(text, flavor=flavor)
    except SpecError:
        return
    with contextlib.suppress(SpecError):
        xml_to_xm(result.text, flavor=flavor)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=300), st.sampled_from(["xm", "xl"]))
def test_arbitrary_text_only_raises_spec_error(text: str, flavor: str) -> None:
    _convert(text, flavor)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(config, st.sampled_from(["xm", "xl"]), st.booleans())
def test_near_valid_configs_only_raise_spec_error(pairs: list[tuple[str, Value]], flavor: str,
                                                  named: bool) -> None:
    head = [("name", "fuzz")] if named else []
    _convert(format_config([*head, *pairs]), flavor)


PAYLOADS = ["open({p!r}, 'w')", "__import__('pathlib').Path({p!r}).touch()",
            "[open({p!r}, 'w') for _ in 'a']", "(lambda: open({p!r}, 'w'))()",
            "exec(\"open({p!r}, 'w')\")"]


@settings(max_examples=200, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(config, st.sampled_from(PAYLOADS), st.integers(min_value=0, max_value=25))
def test_payloads_never_execute(tmp_path: Path, pairs: list[tuple[str, Value]], payload: str,
                                where: int) -> None:
    marker = tmp_path / "executed"
    lines = format_config([("name", "fuzz"), *pairs]).splitlines()
    lines.insert(min(where, len(lines)), "memory = " + payload.format(p=str(marker)))
    _convert("\n".join(lines), "xm")
    assert not marker.exists()
