"""pt2 exports: the torch.export program (saved, loaded, run) and the AOTInductor package."""
import json

import pytest
import torch

from glamor_fast.data import EMOTIONS
from glamor_fast.export.model import example_inputs
from glamor_fast.export.pt2 import load_pt2, save_aoti, save_pt2


def _assert_matches(net, run, batches=(1, 5)):
    for batch in batches:
        face, context = example_inputs(batch, torch.Generator().manual_seed(batch))
        with torch.inference_mode():
            want, got = net(face, context), run(face, context)
        assert len(got) == len(want) == 2
        for g, w in zip(got, want):
            torch.testing.assert_close(g, w, atol=1e-5, rtol=0)


def test_pt2_round_trip_with_dynamic_batch_and_metadata(export_net, tmp_path):
    net, meta = export_net
    path = tmp_path / "glamor-net.pt2"
    report = save_pt2(net, meta, path)
    assert report["max_abs_diff"] <= 1e-5
    module, loaded_meta = load_pt2(path)
    assert json.loads(loaded_meta["classes"]) == list(EMOTIONS) and loaded_meta["attention"] == "gla"
    _assert_matches(net, module)
    assert "torch.ops.glamor_fast.gla_forward" in module.print_readable(print_output=False)  # the fused op kept


@pytest.mark.slow
def test_aoti_package_builds_loads_and_matches(export_net, tmp_path):
    """AOTInductor on the CPU (gcc): about a minute on a shared 2-core machine."""
    net, meta = export_net
    path = tmp_path / "glamor-net-aoti.pt2"
    assert save_aoti(net, meta, path)["max_abs_diff"] <= 1e-5
    runner = torch._inductor.aoti_load_package(str(path))
    assert json.loads(runner.get_metadata()["classes"]) == list(EMOTIONS)
    _assert_matches(net, runner, batches=(1, 5, 32))
