#!/usr/bin/env bash
# Gradescope runs this once, as root, when it builds the autograder's image (Ubuntu).
# Written by: minifcn exercises grade --write-setup gradescope DIR
#
# The autograder zip holds, at its root: this file, run_autograder, points.json and a
# minifcn wheel (in your minifcn checkout: pip wheel --no-deps -w DIR .). This installs that
# wheel and hypothesis (what the checks draw their cases with) into a virtual environment,
# /autograder/venv, which run_autograder uses.
set -euo pipefail

ROOT="${AUTOGRADER_ROOT:-/autograder}"

if ! python3 -c "import ensurepip, venv" >/dev/null 2>&1; then
    apt-get update
    apt-get install -y --no-install-recommends python3 python3-venv python3-pip
fi
python3 -m venv "$ROOT/venv"
"$ROOT/venv/bin/python" -m pip install --upgrade pip

wheels=("$ROOT"/source/minifcn-*.whl)
if [ -e "${wheels[0]}" ]; then
    "$ROOT/venv/bin/python" -m pip install "${wheels[0]}" "hypothesis>=6.100"
else
    echo "setup.sh: no minifcn-*.whl in $ROOT/source; put one in the autograder zip" >&2
    exit 1
fi
"$ROOT/venv/bin/python" -m minifcn exercises list
