"""Connection URIs in libvirt's full form, and the --connect / environment precedence."""

from __future__ import annotations

import pytest

from virtctl.errors import ErrorCode, ErrorDomain, SpecError
from virtctl.uri import DEFAULT_URI, ConnectionURI, default_uri, parse_uri


@pytest.mark.parametrize(("text", "expected"), [
    pytest.param("sim:///lab", {"driver": "sim", "transport": None, "host": None, "path": "/lab"},
                 id="sim"),
    pytest.param("qemu:///system", {"driver": "qemu", "host": None, "path": "/system"},
                 id="qemu-system"),
    pytest.param("test:///default", {"driver": "test", "path": "/default"}, id="test-default"),
    pytest.param("qemu+ssh://root@kvm.example.com:2222/system?keyfile=/k&no_verify=1",
                 {"driver": "qemu", "transport": "ssh", "user": "root", "host": "kvm.example.com",
                  "port": 2222, "path": "/system",
                  "params": {"keyfile": "/k", "no_verify": "1"}},
                 id="full-form"),
    pytest.param("xen://", {"driver": "xen", "host": None, "path": "/"}, id="no-path"),
    pytest.param("QEMU+TLS://host/system", {"driver": "qemu", "transport": "tls", "host": "host"},
                 id="scheme-case-folded"),
    pytest.param("qemu+tcp://[fe80::1]:16509/system", {"host": "fe80::1", "port": 16509},
                 id="ipv6-host"),
    pytest.param("qemu+ssh://j%40doe@h/system", {"user": "j@doe"}, id="percent-decoded-user"),
    pytest.param("qemu:///system?", {"params": {}}, id="empty-query"),
])
def test_parse_uri(text: str, expected: dict[str, object]) -> None:
    got = parse_uri(text)
    for field, value in expected.items():
        assert getattr(got, field) == value, field
    assert str(got) == text


@pytest.mark.parametrize("text", [
    pytest.param("", id="empty"),
    pytest.param("qemu", id="no-scheme-separator"),
    pytest.param("/var/run/libvirt", id="a-path"),
    pytest.param("qemu+://x/", id="empty-transport"),
    pytest.param("qemu://h:port/", id="non-numeric-port"),
    pytest.param("9p:///x", id="driver-starts-with-digit"),
])
def test_invalid_uri_is_a_structured_error(text: str) -> None:
    with pytest.raises(SpecError) as caught:
        parse_uri(text)
    assert caught.value.code is ErrorCode.INVALID_URI
    assert caught.value.domain is ErrorDomain.URI


@pytest.mark.parametrize(("uri", "local"), [
    pytest.param("qemu:///system", True, id="local"),
    pytest.param("qemu+unix:///system", True, id="unix-socket"),
    pytest.param("qemu+ssh://h/system", False, id="ssh"),
    pytest.param("qemu://h/system", False, id="remote-host"),
])
def test_is_local(uri: str, local: bool) -> None:
    assert parse_uri(uri).is_local is local


BOTH = {"VIRTCTL_CONNECT": "sim:///from-virtctl", "LIBVIRT_DEFAULT_URI": "sim:///from-libvirt"}


@pytest.mark.parametrize(("explicit", "env", "expected"), [
    pytest.param("sim:///cli", BOTH, "sim:///cli", id="flag-wins"),
    pytest.param(None, BOTH, "sim:///from-virtctl", id="VIRTCTL_CONNECT-next"),
    pytest.param(None, {"LIBVIRT_DEFAULT_URI": "sim:///from-libvirt"}, "sim:///from-libvirt",
                 id="LIBVIRT_DEFAULT_URI-next"),
    pytest.param(None, {}, DEFAULT_URI, id="default"),
    pytest.param("", {"VIRTCTL_CONNECT": ""}, DEFAULT_URI, id="empty-values-ignored"),
])
def test_default_uri_precedence(explicit: str | None, env: dict[str, str],
                                expected: str) -> None:
    assert default_uri(explicit, env) == expected


def test_default_is_the_embedded_driver() -> None:
    assert parse_uri(DEFAULT_URI) == ConnectionURI(driver="sim", path="/default",
                                                   raw="sim:///default")


@pytest.mark.parametrize("uri", ["sim:///../x", "sim:///a/b", "sim:///..", "sim:///%2e%2e",
                                 "sim:///%2E%2E/etc", "sim:///a%2fb"])
def test_a_sim_host_name_cannot_leave_the_state_directory(uri: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from virtctl.drivers import connect

    with pytest.raises(SpecError) as caught:
        connect(uri, env={"VIRTCTL_STATE_DIR": str(tmp_path / "state")})
    assert "a sim host name is one path segment" in caught.value.message
    assert not (tmp_path / "state").exists() or not any((tmp_path / "state").rglob("*"))
