#!/usr/bin/env bash
# Build the Debian 12 cloud guest the `cloudguest` tests boot (tests/integration/
# test_cloud_guest_qemu.py), offline from Debian's packages: cloud-init, qemu-guest-agent,
# openssh-server, and dbus, sudo and locales (without them a graceful shutdown hangs and
# cloud-init reports `error`, not `done`). The guest boots its own kernel directly
# (root=/dev/vda console=ttyS0): no bootloader, no partition table.
#
# Output, in a folder named by the hash of every input (this script, the package list,
# the mirror and the suite), so a second run on the same machine reuses it at once:
#   $CACHE/cloud-image-<hash>/image.qcow2   the root filesystem (ext4, whole disk)
#   $CACHE/cloud-image-<hash>/vmlinuz       the guest's kernel
#   $CACHE/cloud-image-<hash>/initrd.img    its initramfs (virtio_pci, virtio_blk)
# and $CACHE/cloud-image -> cloud-image-<hash> (the tests read this link).
# CACHE is $VIRTCTL_CI_CACHE, else /var/cache/virtctl-ci: outside the repository's
# tracked files, kept between CI runs on one machine. Older builds are removed.
#
# Usage (as root): bash ci/build-cloud-image.sh        prints the folder on stdout
# Takes 2 to 4 minutes the first time (mmdebstrap, mkfs.ext4 -d, qemu-img convert).
set -euo pipefail

SUITE=bookworm
MIRROR="${VIRTCTL_CI_MIRROR:-http://deb.debian.org/debian}"
CACHE="${VIRTCTL_CI_CACHE:-/var/cache/virtctl-ci}"
SIZE=3G
PACKAGES=(
    linux-image-cloud-amd64 initramfs-tools systemd-sysv udev kmod
    cloud-init qemu-guest-agent openssh-server
    ifupdown isc-dhcp-client netbase iproute2 e2fsprogs
    dbus sudo locales
)
# Kernel module folders a virtio guest never loads: stripped to keep the image small.
STRIP_MODULES=(
    drivers/gpu drivers/media drivers/net/wireless drivers/net/ethernet drivers/infiniband
    drivers/scsi/qla2xxx drivers/scsi/lpfc drivers/scsi/mpt3sas drivers/isdn drivers/usb
    drivers/hid drivers/input/joystick drivers/input/touchscreen drivers/bluetooth sound
    net/bluetooth net/wireless net/mac80211 fs/nfs fs/ceph fs/ocfs2 fs/gfs2 fs/xfs fs/btrfs
)

log() { printf 'build-cloud-image: %s\n' "$*" >&2; }

if [ "$(id -u)" -ne 0 ]; then
    log "must run as root (mmdebstrap, mkfs.ext4 -d of a root-owned tree)"
    exit 1
fi

inputs_hash() {
    {
        cat "$0"
        printf '%s\n' "$SUITE" "$MIRROR" "$SIZE" "${PACKAGES[@]}" "${STRIP_MODULES[@]}"
    } | sha256sum | cut -c1-16
}

HASH=$(inputs_hash)
OUT="$CACHE/cloud-image-$HASH"
if [ -s "$OUT/image.qcow2" ] && [ -s "$OUT/vmlinuz" ] && [ -s "$OUT/initrd.img" ]; then
    log "reusing $OUT (inputs unchanged)"
    ln -sfn "cloud-image-$HASH" "$CACHE/cloud-image"
    echo "$OUT"
    exit 0
fi

mkdir -p "$CACHE"
WORK=$(mktemp -d "$CACHE/.build-XXXXXX")
trap 'rm -rf "$WORK"' EXIT
ROOT="$WORK/root"

started=$(date +%s)
log "mmdebstrap $SUITE from $MIRROR"
# The customize hooks run inside the finished tree: strip modules, make the initramfs
# hold only what mounting /dev/vda needs, give the guest an fstab and a hostname
# cloud-init replaces, and spare cloud-init under emulation what costs it most: the
# locale is generated here (its locale module finds it set), only an ed25519 host key is
# made at first boot (an RSA key takes long under TCG), and only NoCloud is looked for.
strip_list="${STRIP_MODULES[*]}"
mmdebstrap --variant=minbase --quiet \
    --include="$(IFS=,; echo "${PACKAGES[*]}")" \
    --customize-hook='for v in "$1"/lib/modules/*; do for d in '"$strip_list"'; do rm -rf "$v/kernel/$d"; done; chroot "$1" depmod -a "$(basename "$v")"; done' \
    --customize-hook='printf "MODULES=list\nCOMPRESS=gzip\n" > "$1/etc/initramfs-tools/conf.d/virtctl-ci"' \
    --customize-hook='printf "virtio_pci\nvirtio_blk\n" >> "$1/etc/initramfs-tools/modules"' \
    --customize-hook='chroot "$1" update-initramfs -u -k all' \
    --customize-hook='printf "/dev/vda / ext4 defaults,discard 0 1\n" > "$1/etc/fstab"' \
    --customize-hook='echo localhost > "$1/etc/hostname"' \
    --customize-hook='rm -f "$1"/etc/ssh/ssh_host_*' \
    --customize-hook='echo "en_US.UTF-8 UTF-8" > "$1/etc/locale.gen" && chroot "$1" locale-gen >/dev/null && echo LANG=en_US.UTF-8 > "$1/etc/default/locale"' \
    --customize-hook='printf "datasource_list: [NoCloud, None]\nssh_genkeytypes: [ed25519]\n" > "$1/etc/cloud/cloud.cfg.d/90-virtctl-ci.cfg"' \
    --customize-hook='chroot "$1" systemctl enable qemu-guest-agent.service || true' \
    --customize-hook='rm -rf "$1"/var/cache/apt/archives/*.deb "$1"/var/lib/apt/lists/*' \
    "$SUITE" "$ROOT" "$MIRROR"

kernel=$(ls "$ROOT"/boot/vmlinuz-* | head -n1)
initrd=$(ls "$ROOT"/boot/initrd.img-* | head -n1)
cp "$kernel" "$WORK/vmlinuz"
cp "$initrd" "$WORK/initrd.img"

log "mkfs.ext4 -d ($SIZE) and qemu-img convert"
# A fixed UUID and hash seed and the build's own time stamps keep the filesystem the
# same from one build to the next as far as mkfs allows.
E2FSPROGS_FAKE_TIME=$(date +%s) mkfs.ext4 -q -F -L rootfs \
    -U 6c1f2d3e-0000-4000-8000-000000000022 -E hash_seed=6c1f2d3e-0000-4000-8000-000000000022 \
    -d "$ROOT" "$WORK/root.raw" "$SIZE" >&2
qemu-img convert -O qcow2 "$WORK/root.raw" "$WORK/image.qcow2"
rm -rf "$ROOT" "$WORK/root.raw"

# Older builds (other inputs) go; the new one is moved in whole, then linked.
find "$CACHE" -maxdepth 1 -name 'cloud-image-*' -type d ! -name "cloud-image-$HASH" \
    -exec rm -rf {} +
mkdir -p "$OUT"
mv "$WORK/image.qcow2" "$WORK/vmlinuz" "$WORK/initrd.img" "$OUT/"
chmod 0755 "$CACHE" "$OUT"
chmod 0644 "$OUT"/*
ln -sfn "cloud-image-$HASH" "$CACHE/cloud-image"
log "built $OUT in $(( $(date +%s) - started )) s ($(du -sh "$OUT" | cut -f1))"
echo "$OUT"
