#!/usr/bin/env bash
# Third GPU pass: correctness of the Triton kernels on the GPU, then fp32 timings.
set -uo pipefail
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD
GLAMOR_FAST_TRITON_TUNE=0 timeout 110 python3 -m pytest tests/ops/test_triton.py -m gpu -q -p no:cacheprovider --tb=line -k "paper_B256 or odd_Dc100 or deterministic or channels_last" 2>&1 | grep -E "passed|failed|^FAILED|Error" | head
timeout 60 python3 -m bench.gpu_probe --B 256 --dtype float32 --backends triton --profile 2>&1 | grep -E "B256|errors|_gla|Self CUDA time"
