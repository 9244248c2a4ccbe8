#!/usr/bin/env bash
# Set up everything the test suite needs on a fresh Debian 12 machine (as root), then run it.
# This is the README's test command; .ci/run calls it.
set -euo pipefail
cd "$(dirname "$0")/.."

# Real libvirt + QEMU for the integration and conformance suites.
bash ci/install-libvirt.sh

python3 -m venv .venv
# shellcheck disable=SC1091
. .venv/bin/activate
python -m pip install --quiet --upgrade pip
python -m pip install --quiet -e '.[test,libvirt]'

export CI="${CI:-true}"
python -m pytest -q -p no:cacheprovider "$@"
