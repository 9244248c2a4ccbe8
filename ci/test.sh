#!/usr/bin/env bash
# Set up everything the test suite needs on a fresh Debian 12 machine (as root), then run it.
# This is the README's test command; .ci/run calls it. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages first: a fresh Debian 12 has no python3-venv (so no `python3 -m venv`)
# and no python3-dev (libvirt-python is built from source). Also /dev/kvm's permissions.
bash ci/install-libvirt.sh --packages-only

# The cloud guest image of the cloudguest tests (ci/build-cloud-image.sh): reused at once
# from /var/cache/virtctl-ci when its inputs are unchanged, else built (about 5 minutes)
# in the background while the venv and libvirt-python are set up.
image_log=$(mktemp)
bash ci/build-cloud-image.sh >"$image_log.path" 2>"$image_log" &
image_build=$!

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
# Without the image those tests fail (CI is set): the rest of the suite still runs.
if wait "$image_build"; then
    VIRTCTL_CLOUD_IMAGE=$(cat "$image_log.path")
    export VIRTCTL_CLOUD_IMAGE
else
    echo "ci/test.sh: building the cloud guest image failed:" >&2
    tail -n 30 "$image_log" >&2
fi
rm -f "$image_log" "$image_log.path"
# The layers of docs/architecture.md ([tool.importlinter] in pyproject.toml): a broken
# contract fails CI before the tests run.
lint-imports --no-cache

if [ "$#" -gt 0 ]; then  # a chosen part of the suite: one run, as asked
    exec python -m pytest -q -p no:cacheprovider "$@"
fi
# The whole suite waits more than it computes (guests booting under TCG, daemons,
# leases: one core busy of two), so the tests that run QEMU guests
# (tests/integration/*_qemu.py) go in a second pytest beside the rest. Both keep to
# what they made (each run has its own name prefix, ports and directories), as every
# test must with other libvirt work beside it.
guest_tests=(tests/integration/*_qemu.py)
guest_log=$(mktemp)
python -m pytest -q -p no:cacheprovider "${guest_tests[@]}" >"$guest_log" 2>&1 &
guests=$!
rest=0
python -m pytest -q -p no:cacheprovider \
    $(printf -- '--ignore=%s ' "${guest_tests[@]}") tests || rest=$?
guest_rc=0
wait "$guests" || guest_rc=$?
echo "--- the QEMU guest tests (tests/integration/*_qemu.py), run beside the rest:"
cat "$guest_log"
rm -f "$guest_log"
echo "ci/test.sh: the rest exited $rest, the QEMU guest tests $guest_rc"
[ "$rest" -eq 0 ] && [ "$guest_rc" -eq 0 ]
