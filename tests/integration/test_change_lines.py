"""What a plan prints for one field, on the sim, in text and JSON: a CD-ROM's media
change is one line with its real class (it used to print twice, `[restart]` and
`[live]`), and an element that only carries a value shows that value (`link: down`,
not `link: link`)."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

Run = Callable[..., Any]


def guest(*, cdrom: str | None, link: str | None = None) -> str:
    source = f", source: {cdrom}" if cdrom else ""
    nic = f", link: {link}" if link else ""
    return textwrap.dedent(f"""\
        kind: Domain
        name: web
        type: qemu
        memory: 256MiB
        vcpus: 1
        os: {{type: hvm, arch: x86_64}}
        disks:
          - {{type: file, device: cdrom, target: hdc, bus: ide, readonly: true{source}}}
        interfaces:
          - {{type: user, model: virtio{nic}}}
        """)


def changes(cli: Run, specs: Path) -> list[dict[str, Any]]:
    doc = cli("diff", "-o", "json", "-f", str(specs)).json()
    (obj,) = doc["objects"]
    return obj["changes"]


def lines(cli: Run, specs: Path, word: str) -> list[str]:
    return [line for line in cli("diff", "-f", str(specs)).out.splitlines() if word in line]


def test_a_media_change_after_a_no_live_eject_prints_once_and_live(
    cli: Run, specs: Path
) -> None:
    # --no-live ejects the medium from the definition only; the guest keeps a.iso. Then
    # b.iso: the definition gains a <source>, the guest changes its @file: one field.
    spec = specs / "web.yaml"
    spec.write_text(guest(cdrom="/srv/a.iso"))
    assert cli("apply", "-f", str(specs)).code == 0
    spec.write_text(guest(cdrom=None))
    assert cli("apply", "--no-live", "-f", str(specs)).code == 0
    spec.write_text(guest(cdrom="/srv/b.iso"))
    found = lines(cli, specs, "disk[hdc]")
    assert len(found) == 1, found
    assert "/srv/b.iso" in found[0] and "[live, update media of disk hdc]" in found[0]
    (change,) = [c for c in changes(cli, specs) if "disk[hdc]" in c["path"]]
    assert change["class"] == "live" and change["new"] == "/srv/b.iso"
    applied = cli("apply", "-f", str(specs))
    assert applied.code == 0, applied.out + applied.err
    assert cli("diff", "-f", str(specs)).code == 0


@pytest.mark.parametrize(("before", "after", "op", "old", "new"), [
    pytest.param(None, "down", "add", None, "down", id="link-down-declared"),
    pytest.param("down", None, "remove", "down", None, id="link-down-dropped"),
])
def test_an_element_only_change_shows_its_value(
    cli: Run, specs: Path, before: str | None, after: str | None, op: str,
    old: str | None, new: str | None,
) -> None:
    spec = specs / "web.yaml"
    spec.write_text(guest(cdrom="/srv/a.iso", link=before))
    assert cli("apply", "-f", str(specs)).code == 0
    spec.write_text(guest(cdrom="/srv/a.iso", link=after))
    (line,) = lines(cli, specs, "/link")
    assert f"/link: {new or old}  [live" in line
    (change,) = [c for c in changes(cli, specs) if c["path"].endswith("/link")]
    assert (change["op"], change["old"], change["new"]) == (op, old, new)
    assert cli("apply", "-f", str(specs)).code == 0
    assert cli("diff", "-f", str(specs)).code == 0


def test_an_added_cdrom_medium_shows_its_file(cli: Run, specs: Path) -> None:
    spec = specs / "web.yaml"
    spec.write_text(guest(cdrom=None))
    assert cli("apply", "-f", str(specs)).code == 0
    spec.write_text(guest(cdrom="/srv/a.iso"))
    (line,) = lines(cli, specs, "disk[hdc]")
    assert "+ devices/disk[hdc]/source: /srv/a.iso  [live" in line
    (change,) = changes(cli, specs)
    assert change["new"] == "/srv/a.iso"


def test_a_link_state_dropped_by_a_no_live_run_shows_its_value_later(
    cli: Run, specs: Path
) -> None:
    # The --no-live run leaves the guest's link down and notes it; the next run shows
    # the running guest's value, not the element's tag.
    spec = specs / "web.yaml"
    spec.write_text(guest(cdrom="/srv/a.iso", link="down"))
    assert cli("apply", "-f", str(specs)).code == 0
    spec.write_text(guest(cdrom="/srv/a.iso"))
    assert cli("apply", "--no-live", "-f", str(specs)).code == 0
    (line,) = lines(cli, specs, "/link")
    assert "/link: down  [live" in line, line
    (change,) = [c for c in changes(cli, specs) if c["path"].endswith("/link")]
    assert (change["op"], change["old"], change["new"]) == ("remove", "down", None)
    assert cli("apply", "-f", str(specs)).code == 0
    assert cli("diff", "-f", str(specs)).code == 0
