#!/usr/bin/env bash
# One command for a GPU session (an H200 machine with Python 3.12 + PyTorch, no network):
# installs the carried wheels, builds nerfacc's CUDA extension, runs the GPU tests and the GPU
# benchmarks, and writes every figure into OUT. Each step runs under `timeout` against one
# deadline (GPU_SESSION_SECONDS, default 530 s) so the whole command ends in under 9 minutes.
#
# Usage, from the repository root (the wheels in .whl/, see benchmarks/README.md):
#
#     bash benchmarks/gpu_session.sh [OUT]      # OUT defaults to $OUT, else results/benchmarks/gpu
#
# Files in OUT: session.log (everything printed), gpu_pipeline.json, gpu_pipeline.csv,
# nerf_sweep.json, diffusion_speed.json, speedups.json, pytest_gpu.txt.
#
# Rehearsal without a GPU (checks the script's logic and every Python step at tiny sizes):
#     GPU_SESSION_DEVICE=cpu GPU_SESSION_SMOKE=1 bash benchmarks/gpu_session.sh /tmp/rehearsal
# Other settings: PYTHON (interpreter, default python3), GPU_SESSION_SITE (where the wheels are
# installed, default /tmp/site), GPU_SESSION_SECONDS (the deadline), GPU_SESSION_OVERLAY (a
# config merged over configs/spinnerf_gpu.yaml in the pipeline benchmark; default none).
set -u
OUT="${1:-${OUT:-results/benchmarks/gpu}}"
mkdir -p "$OUT"
exec > >(tee -a "$OUT/session.log") 2>&1

START=$SECONDS
DEADLINE="${GPU_SESSION_SECONDS:-530}"
PY="${PYTHON:-python3}"
DEVICE="${GPU_SESSION_DEVICE:-cuda}"
SITE="${GPU_SESSION_SITE:-/tmp/site}"
SMOKE=()
SWEEP_SIZE=(--iterations 20 --warmup 3)
DIFFUSION_SIZE=(--steps 5 --batch-size 8 --views 8)
SPEEDUPS_SIZE=(--repeat 5)
if [ -n "${GPU_SESSION_SMOKE:-}" ]; then
    SMOKE=(--smoke)
    SWEEP_SIZE=(--iterations 2 --warmup 1 --views 3 --width 96 --height 64 --cpu-defaults)
    DIFFUSION_SIZE=(--steps 1 --batch-size 1 --views 1 --size tiny --resolution 64)
    SPEEDUPS_SIZE=(--repeat 1)
fi
left() { echo $((DEADLINE - (SECONDS - START))); }
log() { echo "[$(date +%H:%M:%S) +$((SECONDS - START))s, $(left) s left] $*"; }
# Seconds for the next step: at most $1, and what is left minus the $2 reserved for later steps.
slot() {
    local s=$(($(left) - $2))
    ((s > $1)) && s=$1
    ((s < 5)) && s=5 # never 0: `timeout 0` would mean no limit
    echo "$s"
}

export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TQDM_DISABLE=1
export TORCH_CUDA_ARCH_LIST="${TORCH_CUDA_ARCH_LIST:-9.0}" MAX_JOBS="${MAX_JOBS:-16}"

log "installing the carried wheels"
if ls .whl/*.whl >/dev/null 2>&1; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target "$SITE" .whl/*.whl || { log "wheel install failed"; exit 1; }
    export PYTHONPATH="$PWD/src:$SITE${PYTHONPATH:+:$PYTHONPATH}"
else
    log "no .whl/ folder: using the installed packages"
    export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
fi
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv || true
"$PY" - <<'EOF' || { echo "imports failed"; exit 1; }
import importlib, torch
print("torch", torch.__version__, "cuda", torch.version.cuda,
      "device", torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none")
for name in ("diffusers", "transformers", "peft", "accelerate", "huggingface_hub", "nerfacc", "lpips", "cleanfid", "maldnerf"):
    try:
        module = importlib.import_module(name)
        print(f"  {name} {getattr(module, '__version__', '?')}")
    except Exception as exc:
        print(f"  {name}: NOT importable ({type(exc).__name__}: {exc})")
EOF

if ! command -v nvcc >/dev/null 2>&1; then  # nerfacc's JIT build looks for nvcc on PATH
    for dir in /usr/local/cuda/bin /usr/local/cuda-*/bin; do
        if [ -x "$dir/nvcc" ]; then
            export PATH="$PATH:$dir"
            break
        fi
    done
fi
log "building nerfacc's CUDA extension (JIT, cached for the later steps; nvcc: $(command -v nvcc || echo none))"
NERFACC=off
if timeout "$(slot 150 330)" "$PY" -c "
from maldnerf.nerf.samplers import nerfacc_cuda_available
import sys; sys.exit(0 if nerfacc_cuda_available() else 1)"; then
    NERFACC=auto
fi
log "nerfacc CUDA kernels: $NERFACC"

if [ "$NERFACC" = auto ]; then
    log "GPU tests (pytest -m gpu)"
    timeout "$(slot 60 300)" "$PY" -m pytest -q -m gpu -p no:cacheprovider --ignore=tests/slurm \
        --continue-on-collection-errors tests >"$OUT/pytest_gpu.txt" 2>&1
    tail -5 "$OUT/pytest_gpu.txt"
else
    log "GPU tests skipped: the nerfacc extension did not build (its test is the GPU test)"
fi

# The whole-pipeline benchmark first: it is the one the figures are for. It shortens its
# NeRF time box to fit its budget; the NeRF sweep then gets what is left (it writes its JSON
# after every configuration, so a cut-off sweep keeps the finished ones).
OVERLAY=()
if [ -n "${GPU_SESSION_OVERLAY:-}" ]; then
    OVERLAY=(--config-overlay "$GPU_SESSION_OVERLAY")
fi
BUDGET=$(($(left) - 80))
log "whole-pipeline benchmark (budget ${BUDGET} s)"
if ((BUDGET > 150)); then
    timeout -k 10 "$((BUDGET + 30))" "$PY" benchmarks/gpu_pipeline.py --device "$DEVICE" \
        --output-dir "$OUT" --budget-seconds "$BUDGET" --nerfacc-cuda "$NERFACC" \
        "${OVERLAY[@]}" "${SMOKE[@]}"
else
    log "skipped: not enough time left"
fi

if (($(left) > 40)); then
    log "NeRF training throughput sweep (fp32, +tf32, +bf16, +nerfacc CUDA, +compile)"
    timeout "$(slot 150 5)" "$PY" benchmarks/nerf_benchmark.py --device "$DEVICE" \
        "${SWEEP_SIZE[@]}" --sweep --sweep-nerfacc "$NERFACC" --output "$OUT/nerf_sweep.json"
else
    log "NeRF sweep skipped: not enough time left"
fi

if (($(left) > 90)); then
    log "diffusion speed (LoRA step, re-inpainting) at the full SD2 size"
    timeout "$(slot 150 5)" "$PY" benchmarks/diffusion_benchmark.py --device "$DEVICE" \
        "${DIFFUSION_SIZE[@]}" --output "$OUT/diffusion_speed.json" | tail -40
else
    log "diffusion speed skipped: not enough time left"
fi
if (($(left) > 40)); then
    log "side-by-side speed-ups on the GPU (hash-grid lookup, fused Adam, render chunk size)"
    timeout "$(slot 90 5)" "$PY" benchmarks/speedups.py --device "$DEVICE" \
        --only hash_grid adam render_chunk "${SPEEDUPS_SIZE[@]}" --output "$OUT/speedups.json"
else
    log "speed-ups skipped: not enough time left"
fi
log "done; files in $OUT:"
ls -la "$OUT"
