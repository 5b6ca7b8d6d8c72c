#!/usr/bin/env bash
# The Python wheels the GPU machine lacks for benchmarks/gpu_session.sh, downloaded into .whl/
# (ignored by git): run it here, where pip reaches PyPI, then name .whl in the device call's
# carry. That machine's image holds torch, torchvision, timm, h5py, opencv-python-headless,
# tifffile, scikit-image and numpy, but not these; nothing can be fetched there. Versions are
# this checkout's .venv's, for that image's Python 3.12 on x86-64 (manylinux): about 33 MB.
#
#   bash benchmarks/gpu_wheels.sh      # then: run(command="bash benchmarks/gpu_session.sh",
#                                      #           carry=[".whl"], timeout_s=600)
set -eu
cd "$(dirname "$0")/.."
NEEDED=(pydantic pydantic_core annotated_types typing_inspection shapely openslide-python
        openslide-bin imagecodecs platformdirs)
exclude=$(git rev-parse --git-path info/exclude)
grep -qx '/.whl/' "$exclude" 2>/dev/null || echo '/.whl/' >>"$exclude"
pins=()
for name in "${NEEDED[@]}"; do
    pins+=("$name==$(.venv/bin/pip show "$name" | awk '/^Version:/ {print $2}')")
done
platforms=(--platform manylinux1_x86_64 --platform manylinux2014_x86_64)
for n in 17 24 27 28 31 34 35; do platforms+=(--platform "manylinux_2_${n}_x86_64"); done
rm -rf .whl
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp "${platforms[@]}" -d .whl "${pins[@]}"
ls .whl
du -sh .whl
