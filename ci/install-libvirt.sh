#!/usr/bin/env bash
# Install libvirt + QEMU from Debian 12's packages and start the daemons, for CI and for
# developers who want the real-libvirt tests. Idempotent: re-running installs nothing new
# and leaves running daemons alone. Run as root (CI machines have no systemd, so the
# daemons are started by hand). Usage: bash ci/install-libvirt.sh
set -euo pipefail

PYTHON="${PYTHON:-python3}"
PACKAGES=(
    libvirt-daemon-system libvirt-clients libvirt-dev pkg-config gcc
    qemu-system-x86 qemu-utils dnsmasq-base iptables ovmf
    # ci/fetch-schemas-11.3.sh downloads and unpacks a package index and one package.
    curl xz-utils
    # The tiny guest OS of tests/integration/guestos.py (a kernel booted directly and a
    # static busybox in its initramfs), so hot-unplugged devices are released.
    linux-image-cloud-amd64 busybox-static
    # Independent readers of the cloud-init seed images virtctl writes (bsdtar, isoinfo).
    libarchive-tools genisoimage
)

log() { printf 'install-libvirt: %s\n' "$*" >&2; }

if [ "$(id -u)" -ne 0 ]; then
    log "must run as root"
    exit 1
fi

missing=()
for pkg in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" \
        || missing+=("$pkg")
done
if [ "${#missing[@]}" -gt 0 ]; then
    log "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if ! "$PYTHON" -c 'import libvirt' 2>/dev/null; then
    log "installing libvirt-python"
    "$PYTHON" -m pip install --quiet 'libvirt-python>=9.0'
fi

answers() { virsh -c qemu:///system version >/dev/null 2>&1; }
alive() { [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

# libvirtd logs guest consoles through virtlogd; start it first.
if ! alive /run/virtlogd.pid; then
    log "starting virtlogd"
    virtlogd -d
fi
if ! answers && ! alive /run/libvirtd.pid; then
    log "starting libvirtd"
    libvirtd -d
fi

for _ in $(seq 1 60); do
    if answers; then
        virsh -c qemu:///system version | sed 's/^/install-libvirt: /' >&2
        exit 0
    fi
    sleep 1
done
log "libvirtd did not answer on qemu:///system within 60s"
exit 1
