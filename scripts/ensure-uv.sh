#!/usr/bin/env bash
# Prints the command that runs uv, installing uv with pip first if the machine has none.
set -euo pipefail
if command -v uv >/dev/null 2>&1; then
  echo uv
  exit 0
fi
if ! python3 -m uv --version >/dev/null 2>&1; then
  echo "uv not found: installing it with pip" >&2
  python3 -m pip install --quiet uv >&2
fi
echo "python3 -m uv"
