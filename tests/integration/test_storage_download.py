"""Volume content from a URL on the sim (issue 14): a small HTTP server on 127.0.0.1
(a thread, any free port) serves the image and answers `Range: bytes=N-` with 206.
The download lands in virtctl's cache (pointed at tmp_path), is verified there and
uploaded: the volume holds the file. A wrong checksum fails, naming it, and leaves no
volume and no file in the cache; a `.part` file from an earlier try is resumed with a
Range request; a server that drops the connection mid-body fails with "run again to
resume", and the next run fetches only the rest."""

from __future__ import annotations

import hashlib
import random
import re
import textwrap
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from virtctl.drivers.sim.driver import SimDriver
from virtctl.uri import parse_uri

IMAGE = random.Random(14).randbytes((3 << 20) + 12345)  # several 1 MiB chunks, and a tail
CUT = (1 << 20) + 777  # where the flaky server drops the connection


@dataclass
class Served:
    """What the server serves and what it was asked."""

    files: dict[str, bytes]
    ranges: list[str | None] = field(default_factory=list)  # each GET's Range header
    cut_after: int | None = None  # drop the next response's connection after this many bytes
    port: int = 0

    def url(self, path: str = "/base.img") -> str:
        return f"http://127.0.0.1:{self.port}{path}"


class Handler(BaseHTTPRequestHandler):
    served: Served  # set on the subclass each server gets

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        served = self.served
        data = served.files.get(self.path)
        wanted = self.headers.get("Range")
        served.ranges.append(wanted)
        if data is None:
            self.send_error(404)
            return
        start = 0
        match = re.fullmatch(r"bytes=(\d+)-", wanted or "")
        if wanted and (match is None or int(match[1]) >= len(data)):
            self.send_response(416)
            self.send_header("Content-Range", f"bytes */{len(data)}")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if match is not None:
            start = int(match[1])
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(data) - start))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        body = data[start:]
        if served.cut_after is not None:  # a server that dies mid-download
            body, served.cut_after = body[:served.cut_after], None
            self.close_connection = True
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def served() -> Iterator[Served]:
    state = Served(files={"/base.img": IMAGE})
    handler = type("BoundHandler", (Handler,), {"served": state})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    state.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True, name="test-http")
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """virtctl's cache (speccache.cache_dir reads $VIRTCTL_CACHE_DIR); downloads go in
    its downloads/ folder."""
    folder = tmp_path / "cache"
    monkeypatch.setenv("VIRTCTL_CACHE_DIR", str(folder))
    monkeypatch.delenv("VIRTCTL_CACHE", raising=False)
    return folder / "downloads"


def checksum(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def cached_name(url: str) -> str:
    """The cache file's name for `url`, as applystorage._download derives it (the
    partial download is this plus '.part')."""
    return hashlib.sha256(url.encode()).hexdigest()[:32]


def write_specs(specs: Path, url: str, sum_: str) -> None:
    (specs / "all.yaml").write_text(textwrap.dedent(f"""\
        kind: StoragePool
        name: images
        type: dir
        target: {{path: /srv/images}}
        ---
        kind: Volume
        pool: images
        name: base.img
        format: raw
        content: {{url: "{url}", checksum: "{sum_}"}}
        """))


def sim() -> SimDriver:
    return SimDriver(parse_uri("sim:///default"))


def volume_content() -> bytes:
    return sim().download_volume("images", "base.img", limit=len(IMAGE) + 1)


def apply(cli: Callable[..., Any], specs: Path, *flags: str) -> Any:
    return cli("apply", *flags, "-f", str(specs))


def test_a_url_is_downloaded_verified_and_uploaded(
        cli: Callable[..., Any], specs: Path, served: Served, cache: Path) -> None:
    write_specs(specs, served.url(), checksum(IMAGE))
    first = apply(cli, specs)
    assert first.code == 0, first.out + first.err
    assert "create-volume" in first.out
    assert served.ranges == [None]  # one whole download
    assert volume_content() == IMAGE
    stem = cached_name(served.url())
    assert sorted(p.name for p in cache.iterdir()) == [stem]  # verified, kept, no .part
    assert (cache / stem).read_bytes() == IMAGE
    again = cli("diff", "-f", str(specs))
    assert again.code == 0, again.out + again.err
    assert served.ranges == [None]  # nothing fetched to plan nothing


def test_a_cached_download_is_not_fetched_again(
        cli: Callable[..., Any], specs: Path, served: Served, cache: Path) -> None:
    write_specs(specs, served.url(), checksum(IMAGE))
    assert apply(cli, specs).code == 0
    with (specs / "all.yaml").open("a") as more:
        more.write(f'---\nkind: Volume\npool: images\nname: copy.img\nformat: raw\n'
                   f'content: {{url: "{served.url()}", checksum: "{checksum(IMAGE)}"}}\n')
    second = apply(cli, specs)
    assert second.code == 0 and "copy.img" in second.out, second.out + second.err
    assert sim().download_volume("images", "copy.img", limit=len(IMAGE)) == IMAGE
    assert served.ranges == [None]  # the second volume came from the cache


def test_a_wrong_checksum_fails_and_leaves_nothing(
        cli: Callable[..., Any], specs: Path, served: Served, cache: Path) -> None:
    wrong = checksum(b"not the image")
    write_specs(specs, served.url(), wrong)
    result = apply(cli, specs)
    assert result.code == 1, result.out + result.err
    said = result.out + result.err
    assert "does not match its checksum" in said and wrong in said, said
    assert served.ranges == [None]  # it was downloaded, then discarded
    assert "images/base.img" not in sim().storage().volumes
    assert list(cache.iterdir()) == []  # no .part, no final file


def test_a_partial_download_is_resumed_with_a_range_request(
        cli: Callable[..., Any], specs: Path, served: Served, cache: Path) -> None:
    half = len(IMAGE) // 2
    cache.mkdir(parents=True)
    (cache / f"{cached_name(served.url())}.part").write_bytes(IMAGE[:half])
    write_specs(specs, served.url(), checksum(IMAGE))
    result = apply(cli, specs)
    assert result.code == 0, result.out + result.err
    assert served.ranges == [f"bytes={half}-"]  # only the rest was asked for
    assert volume_content() == IMAGE
    assert sorted(p.name for p in cache.iterdir()) == [cached_name(served.url())]


def test_a_server_that_dies_mid_download_is_resumed_on_the_next_run(
        cli: Callable[..., Any], specs: Path, served: Served, cache: Path) -> None:
    served.cut_after = CUT
    write_specs(specs, served.url(), checksum(IMAGE))
    failed = apply(cli, specs)
    assert failed.code == 1, failed.out + failed.err
    said = failed.out + failed.err
    assert "run again to resume" in said and served.url() in said, said
    assert "images/base.img" not in sim().storage().volumes
    part = cache / f"{cached_name(served.url())}.part"
    assert part.read_bytes() == IMAGE[:CUT]  # what arrived is kept for the next run
    second = apply(cli, specs)
    assert second.code == 0, second.out + second.err
    assert served.ranges == [None, f"bytes={CUT}-"]
    assert volume_content() == IMAGE
    assert not part.exists()


def test_downloads_work_with_the_spec_caches_turned_off(
        cli: Callable[..., Any], specs: Path, served: Served, cache: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VIRTCTL_CACHE", "0")  # spec caches off; downloads still cached
    write_specs(specs, served.url(), checksum(IMAGE))
    result = apply(cli, specs)
    assert result.code == 0, result.out + result.err
    assert volume_content() == IMAGE
    assert (cache / cached_name(served.url())).read_bytes() == IMAGE


# Issue 20 F: a checksum checked late. URL content is fetched and verified before the
# first action (apply only), as local files are hashed then.


def test_a_url_is_verified_before_the_pool_is_made(
        cli: Callable[..., Any], specs: Path, served: Served, cache: Path) -> None:
    wrong = checksum(b"not the image")
    write_specs(specs, served.url(), wrong)
    result = apply(cli, specs)
    assert result.code == 1, result.out + result.err
    assert f"{specs / 'all.yaml'}:5: content.checksum" in result.err, result.err
    assert "images" not in sim().storage().pools  # nothing made, not even the pool
    served.cut_after = CUT
    write_specs(specs, served.url(), checksum(IMAGE))
    cut = apply(cli, specs)
    assert cut.code == 1 and "run again to resume" in cut.err, cut.out + cut.err
    assert "images" not in sim().storage().pools
    dry = cli("diff", "-f", str(specs))
    assert dry.code == 2, dry.out + dry.err  # diff downloads nothing
    assert served.ranges == [None, None]


def test_a_download_is_hashed_once_per_run(
        cli: Callable[..., Any], specs: Path, served: Served, cache: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    from virtctl.reconciler.apply import applystorage

    hashed: list[str | None] = []
    original = applystorage._Hashing.__init__

    def spy(self: Any, inner: Any, sum_: str | None) -> None:
        hashed.append(sum_)
        original(self, inner, sum_)

    monkeypatch.setattr(applystorage._Hashing, "__init__", spy)
    write_specs(specs, served.url(), checksum(IMAGE))
    assert apply(cli, specs).code == 0
    assert hashed == [None]  # verified as downloaded; the upload took that
    assert volume_content() == IMAGE


def test_a_partial_download_behind_a_symlink_is_refused_and_its_target_untouched(
        cli: Callable[..., Any], specs: Path, served: Served, cache: Path,
        tmp_path: Path) -> None:
    """Issue 20 D: files in the cache are never followed (O_NOFOLLOW), or a link at a
    `.part` name would have the download appended to whatever it points at."""
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious")
    cache.mkdir(parents=True)
    (cache / f"{cached_name(served.url())}.part").symlink_to(victim)
    write_specs(specs, served.url(), checksum(IMAGE))
    result = apply(cli, specs)
    assert result.code == 1
    assert "a symbolic link, not a regular file; remove it" in result.out + result.err
    assert victim.read_bytes() == b"precious"
    assert served.ranges == []  # refused before anything was fetched


def test_a_download_folder_others_can_write_is_refused(
        cli: Callable[..., Any], specs: Path, served: Served, cache: Path) -> None:
    cache.mkdir(parents=True)
    cache.chmod(0o777)
    write_specs(specs, served.url(), checksum(IMAGE))
    result = apply(cli, specs)
    assert result.code == 1
    assert (f"{cache}: cannot keep downloads there: writable by its group or others "
            "(mode 0777)") in result.out + result.err
    assert served.ranges == []  # nothing fetched
