#!/usr/bin/env bash
# Wheel smoke test: build the sdist and the wheel (python -m build, isolated), install the wheel
# into a fresh venv with its dependencies from the configured package index, and from a folder
# outside the checkout run `her2viewer --version`, `her2viewer demo --json` and
# `her2viewer view --demo --screenshot`, and check that Help > User guide finds its page inside
# the installed package. Prints the wheel's size and each step's time.
# Usage: packaging/smoke_wheel.sh   (BUILD_PYTHON: a python with `build`, default .venv/bin/python;
#                                    PYTHON: the interpreter of the fresh venv, default python3)
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_PYTHON=${BUILD_PYTHON:-.venv/bin/python}
PYTHON=${PYTHON:-python3}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

step() {  # step NAME COMMAND...: run a command, print how long it took on stderr
    local name=$1 start=$SECONDS
    shift
    "$@"
    echo "smoke_wheel: $name took $((SECONDS - start)) s" >&2
}

quietly() {  # quietly COMMAND...: run a command, show its output only when it fails
    "$@" >"$WORK/step.log" 2>&1 || { cat "$WORK/step.log"; return 1; }
}

step build quietly "$BUILD_PYTHON" -m build --outdir "$WORK/dist" .
WHEEL=$(ls "$WORK"/dist/*.whl)
echo "smoke_wheel: $(basename "$WHEEL") $(du -k "$WHEEL" | cut -f1) KiB," \
    "sdist $(du -k "$WORK"/dist/*.tar.gz | cut -f1) KiB"

step venv "$PYTHON" -m venv "$WORK/venv"
step install quietly "$WORK/venv/bin/python" -m pip install "$WHEEL"

mkdir "$WORK/run"
cd "$WORK/run"
export QT_QPA_PLATFORM=offscreen HER2VIEWER_CACHE="$WORK/cache"
APP="$WORK/venv/bin/her2viewer"
step version "$APP" --version
step guide "$WORK/venv/bin/python" -c \
    "from her2viewer.gui.help import GUIDE_PAGE; assert GUIDE_PAGE.is_file(), GUIDE_PAGE"
step demo "$APP" demo --json >demo.json
"$WORK/venv/bin/python" -c "import json, sys; json.load(open(sys.argv[1]))" demo.json
step screenshot "$APP" view --demo --screenshot x.png
test -s x.png
echo "smoke_wheel: OK (version, guide, demo --json, view --demo --screenshot from $WORK/run)"
