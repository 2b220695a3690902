"""Benchmarks for glamor_fast (they live in the repository, not in the wheel). From the root:

    python -m bench.gla      the GLA op: every backend vs the plain-PyTorch formulations (--probe: one shape's GPU kernels)
    python -m bench.block    one fused encoder block, BatchNorm -> ReLU -> MaxPool (--profile: its GPU kernels)
    python -m bench.model    GLAMOR-Net end to end: images/s and peak memory under speed settings
    python -m bench.video    `glamor-fast predict` on a generated clip, end to end
    python -m bench.data     the input pipeline, on the fly vs the prepared cache
    .venv-tf/bin/python -m bench.tf_peer   the authors' TensorFlow network (its own venv: see its docstring)
    python -m bench.report   RESULTS-style markdown tables from bench.gla / bench.model JSON

bench/RESULTS.md holds the current figure per question; bench/RESULTS-archive.md the full log.
"""
