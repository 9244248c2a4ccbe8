#!/usr/bin/env bash
# Install libvirt + QEMU from Debian 12's packages and start the daemons, for CI and for
# developers who want the real-libvirt tests. Idempotent: re-running installs nothing new
# and leaves running daemons alone. Run as root (CI machines have no systemd, so the
# daemons are started by hand).
#
# Usage: bash ci/install-libvirt.sh [--packages-only]
#   --packages-only  the Debian packages and /dev/kvm's permissions only: ci/test.sh runs
#                    this first, before it makes its venv (python3-venv is one of them),
#                    then runs the script again without it to add libvirt-python and
#                    start the daemons.
# Sourcing the script defines its functions without running anything (the tests call
# kvm_group_access on a file of their own).
set -euo pipefail

PACKAGES=(
    # ci/test.sh makes a venv (python3-venv) and pip builds libvirt-python in it from
    # source (python3-dev, libvirt-dev, pkg-config, gcc): a fresh Debian 12 has none.
    python3-venv python3-dev
    libvirt-daemon-system libvirt-clients libvirt-dev pkg-config gcc
    qemu-system-x86 qemu-utils dnsmasq-base iptables ovmf
    # ci/fetch-schemas-11.3.sh downloads and unpacks a package index and one package.
    curl xz-utils
    # The tiny guest OS of tests/integration/guestos.py (a kernel booted directly and a
    # static busybox in its initramfs), so hot-unplugged devices are released.
    linux-image-cloud-amd64 busybox-static
    # Independent readers of the cloud-init seed images virtctl writes (bsdtar, isoinfo).
    libarchive-tools genisoimage
    # Tools the tests run that a minimal Debian 12 lacks: git (apply sets and commits
    # recorded from git work trees) and ip (free subnets for test networks; libvirt only
    # recommends iproute2).
    git iproute2
    # The Debian 12 cloud guest of the cloudguest tests, built offline from Debian's
    # packages (ci/build-cloud-image.sh: mmdebstrap, mkfs.ext4 -d, qemu-img).
    mmdebstrap e2fsprogs
    # etcd for the fleet tests: each starts its own 3-member cluster on loopback
    # (tests/integration/etcdcluster.py, docs/fleet.md); the package's own service is
    # not used. openssl makes the certificates of the TLS cluster.
    etcd-server openssl
)

log() { printf 'install-libvirt: %s\n' "$*" >&2; }

install_packages() {
    local missing=() pkg
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
}

# What Debian's udev rule does for /dev/kvm (GROUP="kvm", MODE="0660"), for machines
# without udev, where the node is root's alone (0600). There libvirt finds KVM usable
# when it probes QEMU as root but not for the qemu user (group kvm), marks its cached
# capabilities invalid and probes QEMU again on every capabilities lookup: a define
# takes 60 to 90 s instead of 0.1 s. A node the kvm group or everyone may already
# open is left alone, and so is one root does not own; a missing one is no error.
kvm_group_access() {
    local dev="${1:-/dev/kvm}" owner group mode
    [ -e "$dev" ] || return 0
    owner=$(stat -c %u "$dev")
    group=$(stat -c %G "$dev")
    mode=$((8#$(stat -c %a "$dev")))
    if (( (mode & 8#006) == 8#006 )); then
        return 0  # everyone may open it
    fi
    if [ "$group" = kvm ] && (( (mode & 8#060) == 8#060 )); then
        return 0  # the kvm group may open it (udev did its job, or we did before)
    fi
    if [ "$owner" != 0 ]; then
        log "$dev is not root's; its permissions are left alone"
        return 0
    fi
    if ! getent group kvm >/dev/null; then
        addgroup --quiet --system kvm
    fi
    log "$dev: root:$group $(printf '%o' "$mode") -> root:kvm 660 (no udev here)"
    chown root:kvm "$dev"
    chmod 660 "$dev"
}

install_binding() {
    local python="${PYTHON:-python3}"
    if ! "$python" -c 'import libvirt' 2>/dev/null; then
        log "installing libvirt-python"
        "$python" -m pip install --quiet 'libvirt-python>=9.0'
    fi
}

answers() { virsh -c qemu:///system version >/dev/null 2>&1; }
alive() { [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

start_daemons() {
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
            return 0
        fi
        sleep 1
    done
    log "libvirtd did not answer on qemu:///system within 60s"
    return 1
}

main() {
    if [ "$(id -u)" -ne 0 ]; then
        log "must run as root"
        exit 1
    fi
    case "${1:-}" in
        ""|--packages-only) ;;
        *) log "unknown argument: $1 (usage: bash ci/install-libvirt.sh [--packages-only])"
           exit 1 ;;
    esac
    install_packages
    kvm_group_access "${KVM_DEVICE:-/dev/kvm}"
    if [ "${1:-}" = "--packages-only" ]; then
        return 0
    fi
    install_binding
    start_daemons
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    main "$@"
fi
