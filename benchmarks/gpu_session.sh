#!/bin/bash
# The checks a session that is lent a GPU runs (issue 14), as one prepared call.
#
#   here:   bash benchmarks/gpu_session.sh prepare
#           (py3.12 wheels of what the device image lacks -> .whl/, which .git/info/exclude ignores;
#            versions taken from this virtualenv, so pydantic and pydantic-core match)
#   there:  the device tool's run with carry [".whl"], timeout_s 580 and the command
#           bash benchmarks/gpu_session.sh run
#
# "run" writes under $OUT: device.txt (GPU, torch), cuda_tests.txt (every test whose name says
# cuda: CPU/CUDA score agreement, population bit-exactness on CUDA, worker pinning),
# stacked_step_cuda.txt (whether the step's shortcuts past vmap are exact on CUDA, and their
# speed-up there: if exact, enable them on CUDA in sandbox/harness.py), throughput_cuda.txt
# (candidates per hour, per-program vs population batching, on the GPU) and the same two
# benchmarks on the machine's CPU cores for the ratio. Each step has its own timeout, so one
# that hangs leaves the others' figures.
set -u
case "${1:-}" in
prepare)
  grep -qx "/.whl/" .git/info/exclude 2>/dev/null || echo "/.whl/" >> .git/info/exclude
  pins=$(python3 - <<'EOF'
import importlib.metadata as m
names = ["pydantic", "pydantic-core", "annotated-types", "typing-inspection", "tenacity", "openai", "jiter",
         "sniffio", "distro", "expecttest", "lark", "typing-extensions"]
pins = []
for name in names:
    try:
        pins.append(f"{name}=={m.version(name)}")
    except m.PackageNotFoundError:
        pins.append(name)
print(" ".join(pins))
EOF
)
  python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d .whl $pins
  ;;
run)
  OUT=${OUT:-/tmp/gpu-session}
  mkdir -p "$OUT"
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || { echo "wheel install failed" | tee "$OUT/device.txt"; exit 1; }
  export PYTHONPATH="/tmp/site:$PWD" PYTHONUNBUFFERED=1
  { nvidia-smi -L; python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name())"; nproc; } \
    > "$OUT/device.txt" 2>&1
  timeout 170 python3 -m pytest -q -p no:cacheprovider -k "cuda or CUDA" tests/ > "$OUT/cuda_tests.txt" 2>&1
  timeout 90 python3 benchmarks/stacked_step.py --device cuda --repeats 50 > "$OUT/stacked_step_cuda.txt" 2>&1
  timeout 60 python3 benchmarks/stacked_step.py --device cpu --repeats 50 \
    --tasks noisy_quadratic,mlp_digits,cnn_digits,mf_zipf > "$OUT/stacked_step_cpu.txt" 2>&1
  timeout 220 python3 benchmarks/throughput.py --device cuda --executors local,population --controller-sizes '' \
    > "$OUT/throughput_cuda.txt" 2>&1
  tail -n 4 "$OUT"/*.txt
  ;;
*)
  echo "usage: bash benchmarks/gpu_session.sh prepare|run" >&2
  exit 2
  ;;
esac
