"""Two CPU processes with gloo (what torchrun would launch): both ranks end with the same weights."""
from __future__ import annotations

import os

import pytest
import torch
import torch.multiprocessing as mp

from tests.helpers import free_port, set_process_group_env
from tests.tiny_training import tiny_config, tiny_dataset


def _worker(rank: int, world: int, port: int, data_root: str, out_dir: str, result_dir: str):
    set_process_group_env(rank, world, port)
    from glamor_fast.training import train

    result = train(tiny_config(data_root, out_dir, threads=1, max_batches_per_epoch=2, epochs=1))
    torch.save({"model": result.model.state_dict(), "history": result.history},
               os.path.join(result_dir, f"rank{rank}.pt"))


@pytest.mark.skipif(not torch.distributed.is_available() or not torch.distributed.is_gloo_available(),
                    reason="needs torch.distributed with gloo")
def test_two_process_gloo_run_agrees(tmp_path):
    data = tiny_dataset(tmp_path / "builtin")
    results = tmp_path / "results"
    results.mkdir()
    mp.spawn(_worker, args=(2, free_port(), str(data), str(tmp_path / "run"), str(results)), nprocs=2, join=True)
    r0, r1 = (torch.load(results / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    for k in r0["model"]:
        assert torch.equal(r0["model"][k], r1["model"][k]), k
    # Metrics are summed over ranks, so both report the same numbers; the 24 training images
    # (28 minus 4 held out) are split 12 + 12, each rank's 12 in batches of 8 and 4.
    assert _same_but_time(r0["history"], r1["history"])
    assert r0["history"][0]["train_samples"] == 24
    assert (tmp_path / "run" / "last.pt").is_file()  # written by rank 0


def _same_but_time(h0, h1):
    strip = lambda h: [{k: v for k, v in row.items() if k != "time_s"} for row in h]  # noqa: E731
    return strip(h0) == strip(h1)
