"""DDP over the cache: two gloo processes see every training sample exactly once per epoch."""
import json
import os

import pytest
import torch
import torch.multiprocessing as mp

from glamor_fast.data.sample_frames import write_frames_tree
from tests.helpers import free_port, set_process_group_env


def _worker(rank: int, world: int, port: int, cache: str, out_dir: str, result_dir: str):
    set_process_group_env(rank, world, port)
    from glamor_fast.training import TrainConfig, loop, train

    seen, real = [], loop.forward_batch

    def recording(model, batch, device, amp):
        seen.append(list(batch["path"]))
        return real(model, batch, device, amp)

    loop.forward_batch = recording
    cfg = TrainConfig(dataset="caer-s", cache=cache, out_dir=out_dir, epochs=2, batch_size=4, gla_hidden=16,
                      backend="reference", threads=1, progress=False, val_fraction=0, num_workers=0, seed=0)
    result = train(cfg)
    with open(os.path.join(result_dir, f"rank{rank}.json"), "w") as f:
        json.dump({"batches": seen, "history": result.history}, f)


@pytest.mark.skipif(not torch.distributed.is_available() or not torch.distributed.is_gloo_available(),
                    reason="needs torch.distributed with gloo")
def test_two_gloo_processes_see_each_cached_sample_once_per_epoch(tmp_path):
    from glamor_fast.data.cache_build import prepare_cache

    root = write_frames_tree(tmp_path / "caer", {"train": 2, "test": 1})
    prepare_cache(root, tmp_path / "cache", workers=1, progress=False)
    results = tmp_path / "results"
    results.mkdir()
    mp.spawn(_worker, args=(2, free_port(), str(tmp_path / "cache"), str(tmp_path / "run"), str(results)),
             nprocs=2, join=True)
    ranks = [json.loads((results / f"rank{r}.json").read_text()) for r in (0, 1)]
    train_all = sorted(str(p.relative_to(root)) for p in (root / "train").rglob("*.png"))
    assert len(train_all) == 14
    epochs = []
    for r in ranks:
        # Per epoch: 7 training samples in batches of 4 + 3, then validation on this rank's share of test.
        b = r["batches"]
        train_batches = [x for x in b if x and x[0].startswith("train/")]
        assert [len(x) for x in train_batches] == [4, 3, 4, 3]
        epochs.append([sum(train_batches[0:2], []), sum(train_batches[2:4], [])])
    for e in range(2):
        both = epochs[0][e] + epochs[1][e]
        assert sorted(both) == train_all  # each sample once, on exactly one rank
    assert epochs[0][0] != epochs[0][1]  # reshuffled between epochs
    assert ranks[0]["history"][0]["train_samples"] == 14
