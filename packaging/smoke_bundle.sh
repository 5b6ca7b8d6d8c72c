#!/usr/bin/env bash
# Smoke test of the desktop bundle as a user without the venv would run it: a clean
# environment (no PYTHONPATH, no venv, a fresh HOME), from another directory. Prints the
# bundle's size and the wall time of `--version` and of the demo screenshot.
# Usage: packaging/smoke_bundle.sh [dist/her2viewer]
set -euo pipefail

bundle=$(cd "${1:-dist/her2viewer}" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

run() {
    (cd "$work" && env -i HOME="$work/home" PATH=/usr/bin:/bin LANG=C.UTF-8 QT_QPA_PLATFORM=offscreen \
        "$bundle/her2viewer" "$@")
}

seconds() {
    local start=$EPOCHREALTIME
    "$@" >"$work/out.txt" 2>&1 || { cat "$work/out.txt" >&2; echo "FAILED: $*" >&2; exit 1; }
    awk -v a="$start" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }'
}

mkdir -p "$work/home"
version_s=$(seconds run --version)
grep -q "^her2viewer " "$work/out.txt"
demo_s=$(seconds run view --demo --screenshot "$work/demo.png")
python3 - "$work/demo.png" <<'PY'
import struct, sys
with open(sys.argv[1], "rb") as png:
    head = png.read(24)
assert head[:8] == b"\x89PNG\r\n\x1a\n", "the screenshot is not a PNG"
width, height = struct.unpack(">II", head[16:24])
assert width > 200 and height > 200, f"the screenshot is only {width}x{height}"
PY
again_s=$(seconds run view --demo --screenshot "$work/demo2.png")
echo "bundle: $bundle ($(du -sh "$bundle" | cut -f1))"
echo "--version: ${version_s}s; demo screenshot: ${demo_s}s (first run, writes the demo case)," \
     "${again_s}s (second run)"
echo "smoke test passed"
