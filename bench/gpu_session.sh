#!/usr/bin/env bash
# One device-machine session: build the CUDA extension, run the GPU tests, the GLA op benchmark
# and the model benchmark on CUDA, then look inside the GLA op at one shape (bench.gla --probe)
# and the encoder block (bench.block --profile). Logs and JSON go to $OUT (default ./gpu_out).
#   bash bench/gpu_session.sh [pytest args...]
set -uo pipefail
OUT=${OUT:-gpu_out}; mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0} MAX_JOBS=${MAX_JOBS:-16}
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$OUT/card.txt"
python3 -c "import torch, triton; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'triton', triton.__version__, torch.cuda.get_device_name())" | tee -a "$OUT/card.txt"
t0=$(date +%s)
python3 setup.py build_ext --inplace > "$OUT/build.log" 2>&1 || { tail -40 "$OUT/build.log"; echo BUILD FAILED; }
echo "build: $(( $(date +%s) - t0 )) s"
# the in-place build puts glamor_fast._C beside the sources: run them from the checkout
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
python3 -c "from glamor_fast.ops import extension as e; print('ext error:', e.load_error(), 'CUDA kernels:', e.kernel_missing('gla_forward', 'CUDA') is None)"
GLAMOR_FAST_TRITON_TUNE=0 timeout ${PYTEST_S:-240} python3 -m pytest -m gpu -q -p no:cacheprovider --timeout=120 -rfE "$@" 2>&1 | tee "$OUT/pytest_gpu.log" | tail -60
# Tests that run on the GPU when one is there but are not gpu-marked (they also run on the CPU):
# exact zero gradients and the differentiable lse of the Triton op.
GLAMOR_FAST_TRITON_TUNE=0 timeout ${PYTEST2_S:-120} python3 -m pytest -q -p no:cacheprovider --timeout=60 -rfE \
  tests/ops/gla/test_gla.py -k "triton and (exact_zero or grad_lse)" 2>&1 | tee "$OUT/pytest_gpu_extra.log" | tail -15
# The host path: ATen calls and host vs wall time per fused op (the sync-free and CUDA-graph
# capture tests, tests/ops/gla/test_host_path_gpu.py, ran with -m gpu above).
timeout ${OVERHEAD_S:-90} python3 -m bench.overhead --device cuda --json "$OUT/overhead_cuda.json" 2>&1 | tee "$OUT/bench_overhead.log" | tail -20
timeout ${MODEL_S:-150} python3 -m bench.model --device cuda --quick --json "$OUT/model_cuda.json" 2>&1 | tee "$OUT/bench_model.log" | tail -30
timeout ${GLA_S:-150} python3 -m bench.gla --device cuda --quick --json "$OUT/gla_cuda.json" 2>&1 | tee "$OUT/bench_gla.log" | tail -40
timeout ${PROBE_S:-120} python3 -m bench.gla --probe 2>&1 | tee "$OUT/gla_probe.log" | tail -60
timeout ${PROFILE_S:-90} python3 -m bench.block --profile 2>&1 | tee "$OUT/block_profile.log" | tail -40
echo "session: $(( $(date +%s) - t0 )) s"
