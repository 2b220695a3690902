"""keep_freed_memory: glibc's mallopt in effect in a fresh process, and train() applies it on the CPU."""
import subprocess
import sys

import pytest


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_keep_freed_memory_applies_once_in_a_fresh_process():
    code = ("from glamor_fast.training.allocator import keep_freed_memory\n"
            "print(keep_freed_memory(), keep_freed_memory())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.split() == ["True", "True"], out.stderr


def test_train_applies_it_on_the_cpu_unless_switched_off(tmp_path, monkeypatch):
    from glamor_fast.training import allocator, train
    from tests.tiny_training import tiny_config, tiny_dataset

    data = tiny_dataset(tmp_path / "data")
    calls = []
    monkeypatch.setattr(allocator, "keep_freed_memory", lambda: calls.append(1) or True)
    for keep in (False, True):
        train(tiny_config(data, tmp_path / f"run{keep}", keep_freed_memory=keep, max_batches_per_epoch=1))
    assert calls == [1]
