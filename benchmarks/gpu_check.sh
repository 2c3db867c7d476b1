#!/usr/bin/env bash
# GPU readiness check on a GPU machine: install what the machine lacks, then run gpu_check.py.
#
# The project's lent GPU machine has CUDA torch, transformers and accelerate but not diffusers,
# PyAV (and possibly opencv-python-headless, ftfy), and cannot reach a package index. Build those
# as wheels on a machine that can, with the versions of the project's .venv (docs/gpu.md):
#     .venv/bin/pip wheel --no-deps diffusers==0.42.1 av==18.1.0 opencv-python-headless ftfy wcwidth -w wheels/
# and carry wheels/ along (git-ignored). A wheel is installed only when its package is missing,
# so the machine's own torch / transformers / numpy stay as they are.
#
#     bash benchmarks/gpu_check.sh [gpu_check.py options, e.g. --budget-minutes 6 --modes model group]
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python}"

shopt -s nullglob
for wheel in wheels/*.whl; do
  dist="$(basename "$wheel" | cut -d- -f1)"
  if ! "$PYTHON" -m pip show -q "$dist" >/dev/null 2>&1; then
    echo "gpu_check.sh: installing carried wheel $(basename "$wheel")"
    "$PYTHON" -m pip install -q --no-deps --no-index "$wheel"
  fi
done

# The project itself, without touching the installed dependencies (no index to build in isolation
# from); when setuptools is missing too, import it from the checkout instead.
if ! "$PYTHON" -m pip install -q --no-deps --no-build-isolation -e . >/dev/null 2>&1; then
  echo "gpu_check.sh: editable install failed; using PYTHONPATH=$PWD"
  export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
fi

# Preflight: one clear line instead of a traceback minutes in.
"$PYTHON" - <<'PY'
import sys
try:
    import torch
    import flowstudio.avatar.inference.streaming, flowstudio.edit, flowstudio.pipeline  # noqa: F401
except ModuleNotFoundError as exc:
    sys.exit(f"gpu_check.sh: {exc.name} is missing: add its wheel to wheels/ (docs/gpu.md)")
if not torch.cuda.is_available():
    sys.exit("gpu_check.sh: torch sees no CUDA device")
PY
exec "$PYTHON" benchmarks/gpu_check.py --budget-minutes 7 "$@"
