"""A hostile or broken host (issue 20, D): files that are not regular files where virtctl
reads user files, symlinks and other users' directories in the sim store and the
caches, and text too long for XML.

- A FIFO, a socket or a device (given with -f, or in a spec directory, or named by a
  cloud-init `file:` or a volume's `content.file`) is refused with one line naming it,
  never waited on: `apply`, `validate`, `diff` and `convert` exit 1 at once, nothing
  applied. The CLI runs as a subprocess with a deadline, so a regression fails the
  test instead of hanging the suite.
- A watcher with a FIFO among its specs logs that file as invalid, goes on reconciling
  the others, and stops on SIGTERM (waits are on its log and the host, no sleeps).
- The sim store never follows a symlink (events.log, lock, records, index entries,
  volume files) and refuses directories another user owns or can write.
- The caches refuse a folder others can write and never follow or block on an entry.
- A 15 MiB YAML string is refused at its file and line, not as `<xml>:1`.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.contract.support import unavailable
from tests.integration.crashkit import virtctl
from tests.integration.test_watch_e2e import Watcher, wait_for
from virtctl.drivers.sim.driver import SimDriver
from virtctl.model import Kind
from virtctl.uri import parse_uri

DOMAIN = textwrap.dedent("""\
    kind: Domain
    name: {name}
    type: kvm
    memory: 64MiB
    os: {{type: hvm, arch: x86_64}}
    """)
EMPTY = {"domains": [], "networks": [], "pools": [], "volumes": []}
DEADLINE = 120  # seconds a CLI run may take on a loaded 2-core machine; a hang is forever


@pytest.fixture
def state(tmp_path: Path) -> Path:
    return tmp_path / "state"


@pytest.fixture
def specs(tmp_path: Path) -> Path:
    folder = tmp_path / "specs"
    folder.mkdir()
    (folder / "good.yaml").write_text(DOMAIN.format(name="good"))
    return folder


def records(state: Path) -> dict[str, list[str]]:
    root = state / "sim" / "default"
    return {f"{kind}s": sorted(p.name for p in (root / f"{kind}s").glob("*.json"))
            if (root / f"{kind}s").exists() else [] for kind in Kind}


def host(state: Path) -> SimDriver:
    return SimDriver(parse_uri("sim:///default"),
                     env={"VIRTCTL_STATE_DIR": str(state), "VIRTCTL_SIM_FSYNC": "0"})


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error: ")]


# -- files that are no regular files ---------------------------------------------------


@pytest.fixture
def fifo(specs: Path) -> Path:
    path = specs / "evil.yaml"
    os.mkfifo(path)
    return path


@pytest.mark.parametrize("verb", [("apply",), ("validate",), ("validate", "--offline"),
                                  ("diff",), ("apply", "--dry-run")])
def test_a_fifo_in_a_spec_directory_is_refused_at_once(
        state: Path, specs: Path, fifo: Path, verb: tuple[str, ...]) -> None:
    result = virtctl(state, *verb, "-f", str(specs), timeout=DEADLINE)
    assert result.returncode == 1, result.stdout + result.stderr
    assert error_lines(result.stderr) == [
        f"error: {fifo}: a FIFO (named pipe), not a regular file; refused "
        "(a spec is a regular file)"], result.stderr
    assert "Traceback" not in result.stderr
    assert records(state) in (EMPTY, {})  # not even good.yaml beside it


@pytest.mark.parametrize("kind", ["fifo", "socket", "/dev/zero", "/dev/null"])
def test_a_file_given_with_f_must_be_a_regular_file(
        state: Path, tmp_path: Path, kind: str) -> None:
    listener = None
    if kind.startswith("/dev/"):
        path, said = Path(kind), "a character device"
    elif kind == "fifo":
        path, said = tmp_path / "given.yaml", "a FIFO (named pipe)"
        os.mkfifo(path)
    else:
        path, said = tmp_path / "given.yaml", "a socket"
        listener = socket.socket(socket.AF_UNIX)
        listener.bind(str(path))
    try:
        for verb in (("apply",), ("validate", "--offline")):
            result = virtctl(state, *verb, "-f", str(path), timeout=DEADLINE)
            assert result.returncode == 1
            assert f"error: {path}: {said}, not a regular file; refused" in result.stderr
        converted = virtctl(state, "convert", "--from", "yaml", "--to", "xml", str(path),
                            timeout=DEADLINE)
        assert converted.returncode == 1
        assert f"error: {path}: {said}, not a regular file" in converted.stderr
    finally:
        if listener is not None:
            listener.close()
    assert records(state) in (EMPTY, {})


def test_convert_refuses_a_directory_given_as_its_file(state: Path, specs: Path) -> None:
    result = virtctl(state, "convert", "--from", "yaml", "--to", "xml", str(specs),
                     timeout=DEADLINE)
    assert result.returncode == 1
    assert error_lines(result.stderr) == [
        f"error: {specs}: a directory, not a regular file; refused (a spec is a regular file)"]


def test_every_unreadable_file_is_named_in_one_run(state: Path, specs: Path,
                                                   fifo: Path) -> None:
    other = specs / "sub" / "other.xml"
    other.parent.mkdir()
    os.mkfifo(other)
    result = virtctl(state, "validate", "--offline", "-f", str(specs), timeout=DEADLINE)
    assert result.returncode == 1
    assert [line.split(": ")[1] for line in error_lines(result.stderr)] == [
        str(fifo), str(other)]


def test_a_cloud_init_file_must_be_a_regular_file(state: Path, tmp_path: Path) -> None:
    folder = tmp_path / "ci"
    folder.mkdir()
    os.mkfifo(folder / "user-data")
    (folder / "web.yaml").write_text(DOMAIN.format(name="web") + textwrap.dedent("""\
        cloudInit:
          pool: images
          userData: {file: user-data}
        """))
    result = virtctl(state, "validate", "--offline", "-f", str(folder), timeout=DEADLINE)
    assert result.returncode == 1
    (line,) = error_lines(result.stderr)
    assert line.startswith(f"error: {folder / 'web.yaml'}:")
    assert "cloudInit.userData.file" in line
    assert f"{folder / 'user-data'} is a FIFO (named pipe), not a regular file" in line


@pytest.mark.parametrize("kind", ["fifo", "/dev/zero", "directory"])
def test_a_volume_content_file_must_be_a_regular_file_before_any_action(
        state: Path, tmp_path: Path, kind: str) -> None:
    folder = tmp_path / "storage"
    folder.mkdir()
    if kind == "fifo":
        content, said = folder / "image.raw", "a FIFO (named pipe)"
        os.mkfifo(content)
    elif kind == "directory":
        content, said = folder / "image.raw", "a directory"
        content.mkdir()
    else:
        content, said = Path(kind), "a character device"
    (folder / "all.yaml").write_text(textwrap.dedent(f"""\
        kind: StoragePool
        name: images
        type: dir
        target: {{path: /srv/images}}
        ---
        kind: Volume
        pool: images
        name: disk.img
        format: raw
        content: {{file: {content}}}
        """))
    result = virtctl(state, "apply", "-f", str(folder), timeout=DEADLINE)
    assert result.returncode == 1, result.stdout + result.stderr
    (line,) = error_lines(result.stderr)
    assert f"content.file: {content} is {said}, not a regular file; refused" in line
    assert line.startswith(f"error: {folder / 'all.yaml'}:")
    assert records(state) in (EMPTY, {})  # the pool was not made either


def test_a_content_file_swapped_for_a_fifo_after_loading_is_refused_at_upload(
        tmp_path: Path) -> None:
    """The upload opens the file itself only if it is regular (the check at load is no
    guarantee: the file may change in between)."""
    from virtctl.errors import SpecError
    from virtctl.model import VolumeContent
    from virtctl.reconciler.apply.applystorage import _open_content

    path = tmp_path / "image.raw"
    os.mkfifo(path)
    with pytest.raises(SpecError, match=f"volume disk.img: {path} is a FIFO"):
        _open_content(VolumeContent(file=str(path)), "disk.img")


# -- the watcher --------------------------------------------------------------------


def test_a_watcher_with_a_fifo_keeps_reconciling_and_stops_on_sigterm(
        tmp_path: Path, state: Path, specs: Path, fifo: Path) -> None:
    env = {k: v for k, v in os.environ.items()
           if k not in ("VIRTCTL_CONNECT", "LIBVIRT_DEFAULT_URI")}
    env.update(VIRTCTL_STATE_DIR=str(state), VIRTCTL_SIM_FSYNC="0", VIRTCTL_CACHE="0",
               PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    watcher = Watcher(tmp_path, ["-f", str(specs)], env)
    try:
        invalid = watcher.wait_event("spec-invalid", timeout=DEADLINE)
        assert invalid["file"] == str(fifo)
        assert "a FIFO (named pipe), not a regular file" in invalid["errors"][0]
        sim = host(state)
        wait_for(lambda: "good" in sim.snapshot().domains, timeout=DEADLINE,
                 what="good.yaml applied beside the FIFO")
        (specs / "later.yaml").write_text(DOMAIN.format(name="later"))
        wait_for(lambda: "later" in sim.snapshot().domains, timeout=DEADLINE,
                 what="a spec added later applied: the watcher still reconciles")
        assert watcher.stop(signal.SIGTERM) == 0
        assert watcher.events("stopped")
    finally:
        if watcher.proc.poll() is None:
            watcher.proc.kill()
            watcher.proc.wait()


# -- text too long for XML ------------------------------------------------------------


BIG = 15 * 1024 * 1024
LIMIT = ("libvirt takes a whole definition of at most 4,194,304 bytes (4 MiB, its daemon's "
         "message limit)")
PARSER_LIMIT = ("libvirt's XML parser takes at most 10,000,000 bytes in one text or attribute "
                "value")


@pytest.fixture
def huge_yaml(tmp_path: Path) -> Path:
    folder = tmp_path / "huge"
    folder.mkdir()
    (folder / "good.yaml").write_text(DOMAIN.format(name="good"))
    (folder / "big.yaml").write_text(DOMAIN.format(name="big") + "description: " + "x" * BIG
                                     + "\n")
    return folder


@pytest.mark.parametrize("verb", [("apply",), ("validate", "--offline"), ("diff",)])
def test_a_15_mib_yaml_string_is_refused_at_its_file_and_line(
        state: Path, huge_yaml: Path, verb: tuple[str, ...]) -> None:
    result = virtctl(state, *verb, "-f", str(huge_yaml), timeout=DEADLINE)
    assert result.returncode == 1
    assert error_lines(result.stderr) == [
        f"error: {huge_yaml / 'big.yaml'}:6: description: a text of {BIG:,} bytes; {LIMIT}"]
    assert records(state) in (EMPTY, {})


def test_convert_names_the_yaml_line_of_a_text_too_long(state: Path, huge_yaml: Path) -> None:
    for target in ("xml", "xm"):
        result = virtctl(state, "convert", "--from", "yaml", "--to", target,
                         str(huge_yaml / "big.yaml"), timeout=DEADLINE)
        assert result.returncode == 1
        assert error_lines(result.stderr) == [
            f"error: {huge_yaml / 'big.yaml'}:6: description: a text of {BIG:,} bytes; "
            f"{PARSER_LIMIT}"]


def test_a_definition_libvirts_daemon_cannot_take_is_refused_at_its_document(
        state: Path, tmp_path: Path) -> None:
    """5 MiB in one YAML string (at its key), or two 2.5 MiB values in an XML file (at
    the document): each text parses, the definition is over libvirt's 4 MiB."""
    (tmp_path / "mid.yaml").write_text(DOMAIN.format(name="mid") + "description: "
                                       + "x" * (5 << 20) + "\n")
    half = "x" * (2500 << 10)
    (tmp_path / "two.xml").write_text(
        "<domain type='kvm'>\n<name>two</name>\n<memory unit='MiB'>64</memory>\n"
        f"<os><type arch='x86_64'>hvm</type></os>\n<description>{half}</description>\n"
        f"<devices><disk type='file'><source file='/{half}'/><target dev='vda'/></disk>"
        "</devices>\n</domain>\n")
    result = virtctl(state, "validate", "--offline", "-f", str(tmp_path / "mid.yaml"),
                     "-f", str(tmp_path / "two.xml"), timeout=DEADLINE)
    assert result.returncode == 1
    lines = error_lines(result.stderr)
    assert lines[0] == (f"error: {tmp_path / 'mid.yaml'}:6: description: a text of "
                        f"{5 << 20:,} bytes; {LIMIT}")
    assert lines[1].startswith(f"error: {tmp_path / 'two.xml'}:1: the domain definition is ")
    assert lines[1].endswith("bytes; libvirt takes at most 4,194,304 bytes (4 MiB, its "
                             "daemon's message limit)")
    assert len(lines) == 2


def test_libvirts_daemon_refuses_a_definition_over_4_mib() -> None:
    """The limit above is libvirt's (REMOTE_STRING_MAX), measured on qemu:///system."""
    from tests.contract.support import PREFIX, libvirt_module, require_connection

    require_connection("qemu:///system")
    libvirt = libvirt_module()
    conn = libvirt.open("qemu:///system")
    name = f"{PREFIX}h5-{os.getpid()}-size"
    head = (f"<domain type='qemu'><name>{name}</name><memory unit='MiB'>32</memory><os>"
            "<type arch='x86_64' machine='pc'>hvm</type></os><description>")
    tail = "</description></domain>"
    try:
        fits = head + "x" * ((4 << 20) - len(head) - len(tail)) + tail
        conn.defineXML(fits).undefine()
        with pytest.raises(libvirt.libvirtError, match="Unable to encode message payload"):
            conn.defineXML(head + "x" * (4 << 20) + tail)
    finally:
        with contextlib.suppress(libvirt.libvirtError):
            conn.lookupByName(name).undefine()
        conn.close()


@pytest.mark.parametrize("where", ["text", "attribute"])
def test_an_xml_value_too_long_is_one_line_at_its_line(state: Path, tmp_path: Path,
                                                       where: str) -> None:
    value = "x" * BIG
    body = (f"<description>{value}</description>" if where == "text" else
            f"<devices><disk type='file'><source file='/{value}'/><target dev='vda'/></disk>"
            "</devices>")
    path = tmp_path / "big.xml"
    path.write_text("<domain type='kvm'>\n<name>big</name>\n<memory unit='MiB'>64</memory>\n"
                    f"<os><type arch='x86_64'>hvm</type></os>\n{body}\n</domain>\n")
    result = virtctl(state, "validate", "--offline", "-f", str(path), timeout=DEADLINE)
    assert result.returncode == 1
    assert error_lines(result.stderr) == [
        f"error: {path}:5: malformed XML: a text or attribute value too long (libvirt's XML "
        "parser takes at most 10,000,000 bytes in one)"], result.stderr
    assert len(result.stderr.splitlines()) == 1


# -- the sim store ------------------------------------------------------------------


@pytest.fixture
def applied(state: Path, specs: Path) -> Path:
    """A store with domain `good` running; returns the store's directory."""
    result = virtctl(state, "apply", "-f", str(specs), timeout=DEADLINE)
    assert result.returncode == 0, result.stderr
    return state / "sim" / "default"


def changed(specs: Path) -> None:
    (specs / "good.yaml").write_text(DOMAIN.format(name="good").replace("64MiB", "96MiB"))


def test_events_log_as_a_symlink_is_refused_and_its_target_untouched(
        state: Path, specs: Path, applied: Path, tmp_path: Path) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    (applied / "events.log").unlink()
    (applied / "events.log").symlink_to(victim)
    before = (applied / "domains" / "good.json").read_bytes()
    changed(specs)
    result = virtctl(state, "apply", "--allow-restart", "-f", str(specs), timeout=DEADLINE)
    assert result.returncode == 1
    assert f"sim state {applied / 'events.log'}: a symbolic link, not a regular file; " \
        "refused" in result.stdout + result.stderr
    assert victim.read_text() == "precious\n"
    assert (applied / "domains" / "good.json").read_bytes() == before  # nothing changed


@pytest.mark.parametrize("verb", [("get", "domains"), ("apply",), ("diff",)])
def test_the_lock_as_a_symlink_or_fifo_is_refused(
        state: Path, specs: Path, applied: Path, tmp_path: Path,
        verb: tuple[str, ...]) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    lock = applied / "lock"
    for planted, said in ((lambda: lock.symlink_to(victim), "a symbolic link"),
                          (lambda: os.mkfifo(lock), "a FIFO (named pipe)")):
        lock.unlink()
        planted()
        args = verb if verb[0] == "get" else (*verb, "-f", str(specs))
        result = virtctl(state, *args, timeout=DEADLINE)
        assert result.returncode == 1
        assert error_lines(result.stderr) == [
            f"error: sim state {lock}: {said}, not a regular file; refused (the sim's state "
            "files are never followed or waited on)"]
    assert victim.read_text() == "precious\n"


@pytest.mark.parametrize(("name", "make", "said"), [
    ("events.log", os.mkfifo, "a FIFO (named pipe)"),  # opened to append: ENXIO, named
    ("domains/good.json", os.mkdir, "a directory"),
    ("counter.json", os.mkfifo, "a FIFO (named pipe)"),
])
def test_store_files_that_are_no_regular_files_are_named(
        state: Path, specs: Path, applied: Path, name: str, make: object,
        said: str) -> None:
    path = applied / name
    path.unlink()
    make(path)  # type: ignore[operator]
    (specs / "more.yaml").write_text(DOMAIN.format(name="more"))  # a define, a start (id)
    result = virtctl(state, "apply", "-f", str(specs), timeout=DEADLINE)
    assert result.returncode == 1
    said_all = result.stdout + result.stderr
    assert f"sim state {path}: {said}, not a regular file; refused" in said_all, said_all
    assert "Traceback" not in said_all


def test_a_state_directory_that_is_no_directory_is_named(tmp_path: Path) -> None:
    state = tmp_path / "state"
    os.mkfifo(state)
    result = virtctl(state, "get", "domains", timeout=DEADLINE)
    assert result.returncode == 1
    assert error_lines(result.stderr) == [
        f"error: sim state {state}: a FIFO (named pipe), not a directory; refused"]


def test_a_record_or_index_entry_as_a_symlink_is_never_followed(
        state: Path, applied: Path, tmp_path: Path) -> None:
    record = applied / "domains" / "good.json"
    outside = tmp_path / "outside.json"
    outside.write_bytes(record.read_bytes())
    record.unlink()
    record.symlink_to(outside)
    result = virtctl(state, "get", "domains", timeout=DEADLINE)
    assert result.returncode == 1
    assert error_lines(result.stderr) == [
        f"error: sim state {record}: a symbolic link, not a regular file; refused (the sim's "
        "state files are never followed or waited on)"]
    record.unlink()
    os.replace(outside, record)
    (entry,) = (applied / "index" / "domain-uuid").iterdir()
    entry.unlink()
    entry.symlink_to(outside)
    with pytest.raises(Exception, match="a symbolic link"):
        host(state)._holder(Kind.DOMAIN, "uuid", entry.name)


def test_a_volume_file_as_a_symlink_is_never_written_through(
        state: Path, tmp_path: Path) -> None:
    folder = tmp_path / "storage"
    folder.mkdir()
    (folder / "all.yaml").write_text(textwrap.dedent("""\
        kind: StoragePool
        name: images
        type: dir
        target: {path: /srv/images}
        ---
        kind: Volume
        pool: images
        name: disk.img
        format: raw
        capacity: 1MiB
        """))
    assert virtctl(state, "apply", "-f", str(folder), timeout=DEADLINE).returncode == 0
    sim = host(state)
    (data,) = (state / "sim" / "default" / "pools-data").glob("*srv*")
    victim = tmp_path / "victim.bin"
    victim.write_bytes(b"precious")
    (data / "disk.img").unlink()
    (data / "disk.img").symlink_to(victim)
    with pytest.raises(Exception, match="not found"):
        sim.resize_volume("images", "disk.img", 2 << 20)  # would truncate the victim
    assert "images/disk.img" not in sim.storage().volumes  # not listed as a volume
    assert victim.read_bytes() == b"precious"


@pytest.mark.parametrize("where", ["store", "sim", "domains"])
def test_a_store_directory_others_can_write_is_refused(
        state: Path, applied: Path, where: str) -> None:
    folder = {"store": applied, "sim": applied.parent, "domains": applied / "domains"}[where]
    folder.chmod(0o777)
    try:
        result = virtctl(state, "get", "domains", timeout=DEADLINE)
    finally:
        folder.chmod(0o755)
    assert result.returncode == 1
    assert error_lines(result.stderr) == [
        f"error: sim state {folder}: writable by its group or others (mode 0777); refused "
        "(chmod go-w)"]


def test_a_store_owned_by_another_user_is_refused(state: Path, applied: Path) -> None:
    if os.geteuid() != 0:
        unavailable("chown to another user needs root")
    os.chown(applied, 65534, 65534)
    result = virtctl(state, "get", "domains", timeout=DEADLINE)
    assert result.returncode == 1
    (line,) = error_lines(result.stderr)
    assert line.startswith(f"error: sim state {applied}: owned by uid 65534, not by uid 0 "
                           "running virtctl; refused")


def test_a_store_directory_as_a_symlink_is_refused(state: Path, applied: Path,
                                                   tmp_path: Path) -> None:
    moved = tmp_path / "elsewhere"
    os.replace(applied / "domains", moved)
    (applied / "domains").symlink_to(moved)
    result = virtctl(state, "get", "domains", timeout=DEADLINE)
    assert result.returncode == 1
    assert error_lines(result.stderr) == [
        f"error: sim state {applied / 'domains'}: a symbolic link, not a directory; refused"]


# -- the caches ---------------------------------------------------------------------


@pytest.fixture
def cache_env(tmp_path: Path, state: Path) -> Iterator[dict[str, str]]:
    yield {"VIRTCTL_CACHE_DIR": str(tmp_path / "cache")}


def cached_run(state: Path, env: dict[str, str], *args: str) -> tuple[int, str, str]:
    import subprocess
    import sys

    from tests.integration.crashkit import virtctl_env

    full = {**virtctl_env(state), **env}
    full.pop("VIRTCTL_CACHE", None)
    done = subprocess.run([sys.executable, "-m", "virtctl", *args], capture_output=True,
                          text=True, env=full, timeout=DEADLINE, check=False,
                          stdin=subprocess.DEVNULL)
    return done.returncode, done.stdout, done.stderr


def test_a_cache_folder_others_can_write_is_refused(state: Path, specs: Path,
                                                    cache_env: dict[str, str]) -> None:
    code, _, err = cached_run(state, cache_env, "validate", "--offline", "-f", str(specs))
    assert code == 0, err
    folder = Path(cache_env["VIRTCTL_CACHE_DIR"])
    assert [p for p in folder.iterdir() if p.is_file()]  # the spec cache was written
    folder.chmod(0o777)
    code, _, err = cached_run(state, cache_env, "validate", "--offline", "-f", str(specs))
    assert code == 1
    assert error_lines(err) == [
        f"error: cache directory {folder}: writable by its group or others (mode 0777); "
        "refused (chmod go-w); or turn the caches off with VIRTCTL_CACHE=0"]
    folder.chmod(0o755)
    (folder / "in-sync").mkdir(exist_ok=True)
    (folder / "in-sync").chmod(0o777)
    code, _, err = cached_run(state, cache_env, "apply", "-f", str(specs))
    assert code == 1
    assert f"error: cache directory {folder / 'in-sync'}: writable" in err


def test_cache_entries_are_never_followed_nor_waited_on(
        state: Path, specs: Path, cache_env: dict[str, str], tmp_path: Path) -> None:
    for _ in range(2):  # the second run finds every entry it wrote
        code, _, err = cached_run(state, cache_env, "apply", "-f", str(specs))
        assert code == 0, err
    folder = Path(cache_env["VIRTCTL_CACHE_DIR"])
    entries = [p for p in folder.rglob("*") if p.is_file()]
    assert len(entries) >= 2  # a spec entry and the memo
    victim = tmp_path / "victim"
    victim.write_text("[]")
    for index, entry in enumerate(entries):
        entry.unlink()
        if index % 2:
            os.mkfifo(entry)
        else:
            entry.symlink_to(victim)
    code, out, err = cached_run(state, cache_env, "apply", "-f", str(specs))
    assert code == 0, err  # as without a cache: in sync
    assert "No changes" in out
    assert victim.read_text() == "[]"
