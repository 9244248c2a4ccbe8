#!/usr/bin/env bash
# Set up everything the test suite needs on a fresh Debian 12 machine (as root), then run it.
# This is the README's test command; .ci/run calls it. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages first: a fresh Debian 12 has no python3-venv (so no `python3 -m venv`)
# and no python3-dev (libvirt-python is built from source). Also /dev/kvm's permissions.
bash ci/install-libvirt.sh --packages-only

python3 -m venv .venv
# shellcheck disable=SC1091
. .venv/bin/activate
python -m pip install --quiet --upgrade pip

# libvirt-python in this venv, and the daemons (libvirtd, virtlogd) started.
PYTHON="$PWD/.venv/bin/python" bash ci/install-libvirt.sh
python -m pip install --quiet -e '.[test,libvirt]'
# libvirt 11.3's schemas, for the Xen conformance test (tests/integration/test_corpus_113.py).
bash ci/fetch-schemas-11.3.sh

# The integration suites run against real libvirt; with CI set they fail, never skip,
# when libvirt or its schemas are missing.
export CI="${CI:-true}"
python -m pytest -q -p no:cacheprovider "$@"
