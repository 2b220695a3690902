"""bench.tf_peer (the authors' TensorFlow network) without TensorFlow: TF is not a dependency of
the project, so here the command must fail in one line that says where to set it up. Its
arguments are checked before TensorFlow is imported."""
import importlib.util

import pytest

from tests.helpers import run_bench

pytestmark = pytest.mark.skipif(importlib.util.find_spec("tensorflow") is not None,
                                reason="TensorFlow is installed here: the command would run the benchmark")


def test_without_tensorflow_is_a_one_line_error():
    proc = run_bench("tf_peer", "--steps", "1", "--rounds", "1")
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("python -m bench.tf_peer: TensorFlow with tf-keras is not importable")
    assert "docstring" in lines[0]


def test_bad_argument_is_refused_before_tensorflow_loads():
    proc = run_bench("tf_peer", "--batch", "0")
    assert proc.returncode == 1
    assert proc.stderr.strip() == "python -m bench.tf_peer: --batch must be >= 1, got 0"
