"""Benchmarks for glamor_fast (lives in the repository, not in the wheel).

    python -m bench.gla    the GLA op: every backend vs eager and torch.compile, time, memory, roofline
    python -m bench.model  GLAMOR-Net end to end: images/s and peak memory under speed settings
    pytest bench/ --benchmark-only   the op cases through pytest-benchmark
"""
