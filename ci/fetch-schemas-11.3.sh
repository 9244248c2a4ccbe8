#!/usr/bin/env bash
# Fetch libvirt 11.3's RelaxNG schemas for the Xen conformance test
# (tests/integration/test_corpus_113.py), which checks virtctl's output against the
# libvirt release whose test pairs it compares with. Debian 12 installs libvirt 9.0, whose
# schema predates parts of 11.3's XML (<acpi><table type='rawset'>), so the schemas come
# from bookworm-backports' libvirt-common package: downloaded, checked against the archive's
# SHA-256, unpacked (never installed: the daemon stays 9.0). Idempotent.
# Usage: bash ci/fetch-schemas-11.3.sh [DEST]   (default: .cache/libvirt-11.3-schemas)
set -euo pipefail
cd "$(dirname "$0")/.."

DEST="${1:-.cache/libvirt-11.3-schemas}"
MIRROR="http://deb.debian.org/debian"
INDEX="$MIRROR/dists/bookworm-backports/main/binary-amd64/Packages.xz"
WANT="11.3.0"

log() { printf 'fetch-schemas: %s\n' "$*" >&2; }

if [ -f "$DEST/domain.rng" ]; then
    exit 0
fi
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

curl -fsSL --retry 3 -o "$work/Packages.xz" "$INDEX"
# The libvirt-common stanza (the package holding the schemas): version, file, checksum.
xz -dc "$work/Packages.xz" | awk -v RS= '/(^|\n)Package: libvirt-common\n/' > "$work/stanza"
version="$(sed -n 's/^Version: //p' "$work/stanza" | head -1)"
file="$(sed -n 's/^Filename: //p' "$work/stanza" | head -1)"
sum="$(sed -n 's/^SHA256: //p' "$work/stanza" | head -1)"
# A later release's schemas accept what 11.3's do; an older one would not.
if [ -z "$file" ] || ! dpkg --compare-versions "$version" ge "$WANT"; then
    log "bookworm-backports has libvirt-common '${version:-none}', not $WANT or later"
    exit 1
fi

curl -fsSL --retry 3 -o "$work/common.deb" "$MIRROR/$file"
echo "$sum  $work/common.deb" | sha256sum -c --quiet -
dpkg-deb -x "$work/common.deb" "$work/root"
mkdir -p "$DEST"
cp "$work"/root/usr/share/libvirt/schemas/*.rng "$DEST/"
echo "$version" > "$DEST/VERSION"
log "libvirt $version schemas in $DEST"
