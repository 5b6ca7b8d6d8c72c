#!/usr/bin/env bash
# Issue 22's GPU figures in one device session (under 9 minutes on an H100; no network,
# nothing outside the repository): one JSON line per step, then a summary line.
#
#   bash benchmarks/gpu_session.sh                     # on the GPU machine, repository root
#   GPU_SESSION_DRY=1 bash benchmarks/gpu_session.sh   # CPU, tiny sizes: checks this script
#
# Steps (each in its own time box; a step that fails or runs out of time does not stop
# the next ones): the environment (and the 40000x32000 synthetic JPEG slide, written once
# into a temporary folder and reused by every step); resnet50_trunc pipeline with
# --decode openslide and with --decode raw against compute-only (goal: raw >= 5000
# patches/s and >= 60% of compute-only); UNI (ViT-L/16) and Virchow2 (ViT-H/14) at full
# size with random weights, pipeline (raw tiles) against compute-only; check_cuda.py
# --decode raw (features against the CPU's within its tolerances).
# Each line: {"step", "rc", "seconds", "result"} (the step's JSON) or "error" (its
# stderr's tail); rc 124 means the time box ran out.
# On the GPU machine (no .venv there) its python3 holds torch; the wheels it lacks come in .whl
# (benchmarks/gpu_wheels.sh, carried) and her2viewer is read from this checkout.
set -u
cd "$(dirname "$0")/.."
PY=.venv/bin/python
if [ ! -x "$PY" ]; then
    PY=$(command -v python3 || command -v python)
    if [ -d .whl ]; then
        "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
            --target /tmp/site .whl/*.whl || exit 1
        export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
    fi
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
LINES="$WORK/lines.jsonl"

# PATCHES: all of the slide's 5439 at 20x / 256 px; time boxes add up to 530 s (x3 dry).
if [ "${GPU_SESSION_DRY:-0}" = 1 ]; then
    DEVICE=cpu SIZE=8000x6400 PATCHES=32 VIT_PATCHES=16 CHECK=(--patches 32 --batch-size 8)
    SMALL=--small SCALE=3
else
    DEVICE=cuda SIZE=40000x32000 PATCHES=100000 VIT_PATCHES=2048 CHECK=(--patches 256)
    SMALL= SCALE=1
fi

# step NAME SECONDS ARGS...: run "$PY ARGS..." in a time box and print its JSON line.
step() {
    local name=$1 box=$2 start rc
    shift 2
    start=$(date +%s.%N)
    timeout --kill-after=10 "$((box * SCALE))" "$PY" "$@" >"$WORK/out" 2>"$WORK/err"
    rc=$?
    "$PY" - "$name" "$rc" "$start" "$(date +%s.%N)" "$WORK/out" "$WORK/err" <<'EOF' | tee -a "$LINES"
import json, sys
name, rc, start, end, out, err = sys.argv[1:]
line = {"step": name, "rc": int(rc), "seconds": round(float(end) - float(start), 1)}
try:
    line["result"] = json.loads(open(out).read())
except ValueError:
    line["error"] = open(err).read()[-1500:]
print(json.dumps(line), flush=True)
EOF
}

BENCH=(benchmarks/bench_extract.py --device "$DEVICE" --slide-size "$SIZE" --slide-cache "$WORK"
       --no-clam)
step environment 60 -c "
import json, sys, torch, torchvision
sys.path.insert(0, 'benchmarks')
from large_slide import cached_large_slide
w, h = (int(s) for s in '$SIZE'.split('x'))
cached_large_slide('$WORK', w, h)
cuda = torch.cuda.is_available()
print(json.dumps({'torch': torch.__version__, 'torchvision': torchvision.__version__,
                  'gpu': torch.cuda.get_device_name() if cuda else None,
                  'bf16': cuda and torch.cuda.is_bf16_supported(), 'slide': '$SIZE'}))"
step resnet50_trunc_openslide 90 "${BENCH[@]}" --encoder resnet50_trunc --patches "$PATCHES" \
    --decode openslide
step resnet50_trunc_raw 80 "${BENCH[@]}" --encoder resnet50_trunc --patches "$PATCHES" \
    --decode raw
step uni_raw 90 "${BENCH[@]}" --encoder uni $SMALL --patches "$VIT_PATCHES" --decode raw
step virchow2_raw 120 "${BENCH[@]}" --encoder virchow2 $SMALL --patches "$VIT_PATCHES" --decode raw
step check_cuda_raw 90 benchmarks/check_cuda.py --device "$DEVICE" --decode raw "${CHECK[@]}" \
    --slide-cache "$WORK" --slide-size "$SIZE"

"$PY" - "$LINES" <<'EOF'
import json, sys
steps = {s["step"]: s.get("result") or {} for s in map(json.loads, open(sys.argv[1]))}
raw = steps.get("resnet50_trunc_raw", {})
summary = {
    "step": "summary",
    "resnet50_trunc_raw_patches_per_s": raw.get("patches_per_s"),
    "resnet50_trunc_raw_over_compute": raw.get("pipeline_over_compute"),
    "goal_5000_and_60pct": bool(raw)
    and raw["patches_per_s"] >= 5000
    and raw["pipeline_over_compute"] >= 0.6,
    "decoder_probe": raw.get("decoder_probe"),
    "check_cuda_passed": steps.get("check_cuda_raw", {}).get("passed"),
}
for name, result in steps.items():
    if "patches_per_s" in result:
        summary[name] = [result["decode"], result["patches_per_s"],
                         result["compute_only_patches_per_s"]]
print(json.dumps(summary))
EOF
