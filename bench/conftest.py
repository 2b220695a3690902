"""pytest-benchmark set-up: a fixed CPU thread count (BENCH_THREADS, default all cores), printed."""
import os

import torch

THREADS = int(os.environ.get("BENCH_THREADS", os.cpu_count()))
torch.set_num_threads(THREADS)


def pytest_report_header(config):
    return f"bench: torch {torch.__version__}, {torch.get_num_threads()} CPU threads (set BENCH_THREADS to change)"
