#!/usr/bin/env bash
# Second GPU pass: the rewritten Triton kernels (correctness subset + timings).
set -uo pipefail
OUT=${OUT:-gpu_out}; mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 TORCH_CUDA_ARCH_LIST=9.0 MAX_JOBS=16 PYTHONPATH=$PWD
python3 setup.py build_ext --inplace > "$OUT/build.log" 2>&1 || { tail -40 "$OUT/build.log"; echo BUILD FAILED; }
GLAMOR_FAST_TRITON_TUNE=0 timeout 200 python3 -m pytest tests/ops/test_triton.py -m gpu -q -p no:cacheprovider --tb=short -k "paper_B256 or odd_Dc100 or highres or deterministic" > "$OUT/pytest_triton.log" 2>&1
grep -E "passed|failed|^FAILED|Error" "$OUT/pytest_triton.log" | head -20
for args in "--dtype float32 --fp32-precision ieee --backends split compile reference triton" "--dtype float32 --fp32-precision tf32x3 --backends triton" "--dtype bfloat16 --backends split compile triton cuda"; do
  timeout 120 python3 -m bench.gpu_probe --B 256 $args 2>&1 | grep -v Warn | grep -E "B256|errors|Error" 
done
timeout 90 python3 -m bench.gpu_probe --B 8 --hw 56 --dtype float32 --fp32-precision tf32x3 --backends split compile triton 2>&1 | grep -E "B8|errors|Error"
