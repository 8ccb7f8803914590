#!/bin/sh
# The gear image's install steps. The Dockerfile runs them; tests/test_image.py runs
# the same script into a temporary virtual environment, so CI checks them.
#   install.sh deps LOCKFILE   create the venv $VENV and install the pinned dependencies
#   install.sh package SRC     install the package from its source, no dependencies
set -eu
: "${VENV:?set VENV to the virtual environment to install into}"
case "${1:-}" in
  deps)
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --no-cache-dir --disable-pip-version-check -r "$2"
    ;;
  package)
    "$VENV/bin/pip" install --no-cache-dir --disable-pip-version-check --no-deps "$2"
    "$VENV/bin/pip" check
    ;;
  *)
    echo "usage: install.sh deps LOCKFILE | install.sh package SRC" >&2
    exit 2
    ;;
esac
