"""glamor_fast.tf_checkpoint: TF tensor bundles read without TensorFlow.

The fixture tests/fixtures/tf-glamor-net was written by TensorFlow 2.21 from the authors' model
code, in three shards, with some tensors split into slices by TF's sharding policy.
"""
from __future__ import annotations

import shutil
import zlib
from pathlib import Path

import numpy as np
import pytest

from glamor_fast.tf_checkpoint import (TFCheckpointError, _raw_update_scalar, crc32c, list_variables, masked_crc32c,
                                       read_index, read_variables)
from tests.tf_bundle import write_bundle

FIXTURE = Path(__file__).parent / "fixtures" / "tf-glamor-net"
PREFIX = FIXTURE / "Model"
SUFFIX = "/.ATTRIBUTES/VARIABLE_VALUE"


def copy_fixture(tmp_path: Path) -> Path:
    dst = tmp_path / "ckpt"
    shutil.copytree(FIXTURE, dst)
    for f in dst.iterdir():
        f.chmod(0o644)
    return dst / "Model"


def _crc32c_bitwise(data: bytes) -> int:
    crc = 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def test_crc32c_known_values_and_every_path():
    assert crc32c(b"123456789") == 0xE3069283            # the CRC-32C check value
    assert crc32c(bytes(32)) == 0x8A9136AA                # RFC 3720 B.4 test vectors
    assert crc32c(b"\xff" * 32) == 0x62A8AB43
    assert crc32c(bytes(range(32))) == 0x46DD794E
    assert crc32c(b"") == 0
    rng = np.random.default_rng(0)
    for n in (1, 4095, 4096, 4097, 5000):                   # scalar path, and the numpy lane path from 4096
        data = rng.integers(0, 256, n, dtype=np.uint8).tobytes()
        assert crc32c(data) == _crc32c_bitwise(data)
    for n in (65536 + 7, 300_001):                          # uneven lanes plus a tail, against the table loop
        data = rng.integers(0, 256, n, dtype=np.uint8).tobytes()
        assert crc32c(data) == _raw_update_scalar(0xFFFFFFFF, data) ^ 0xFFFFFFFF
        assert crc32c(memoryview(data)) == crc32c(np.frombuffer(data, np.uint8))
    c = crc32c(b"abc")
    assert masked_crc32c(b"abc") == (((c >> 15) | (c << 17)) + 0xA282EAD8) & 0xFFFFFFFF
    assert crc32c(b"abc") != zlib.crc32(b"abc")            # Castagnoli, not the zlib polynomial


def test_list_variables_reads_the_index_alone(tmp_path):
    shutil.copy(PREFIX.with_suffix(".index"), tmp_path / "Model.index")   # no data shards at all
    v = list_variables(tmp_path / "Model")
    assert len(v) == 81                                    # as the authors' released Model.index
    assert v[f"FaceEncodingNet/blocks/0/conv/kernel{SUFFIX}"] == ("float32", (3, 3, 3, 32))
    assert v[f"ContextEncodingNet/blocks/3/conv/kernel{SUFFIX}"] == ("float32", (3, 3, 128, 256))  # sliced
    assert v[f"attention_fc1_bn/moving_variance{SUFFIX}"] == ("float32", (128,))
    assert v[f"final_classify/kernel{SUFFIX}"] == ("float32", (128, 7))
    assert v["_CHECKPOINTABLE_OBJECT_GRAPH"] == ("string", ())
    assert all(not k.startswith("\x00") for k in v)        # slice entries are not variables
    assert list_variables(str(tmp_path / "Model.index")) == v   # a path ending in .index works too
    index = read_index(PREFIX)
    assert index.num_shards == 3 and len({e.shard_id for e in index.entries.values()}) == 3
    assert any(e.slices for e in index.entries.values())   # the fixture exercises slice reassembly


def test_read_variables_matches_the_index_and_verifies():
    listed = list_variables(PREFIX)
    arrays = read_variables(PREFIX)
    assert list(arrays) == list(listed)
    for name, (dtype, shape) in listed.items():
        assert arrays[name].shape == shape
        if dtype == "float32":
            a = arrays[name]
            assert a.dtype == np.float32 and a.flags.writeable and np.isfinite(a).all()
    sliced = [n for n, e in read_index(PREFIX).entries.items() if e.slices]
    for name in sliced:                                      # reassembled: no hole left at zero
        assert np.count_nonzero(arrays[name]) == arrays[name].size
    graph = arrays["_CHECKPOINTABLE_OBJECT_GRAPH"].item()
    assert isinstance(graph, bytes) and b"FaceEncodingNet" in graph
    unverified = read_variables(PREFIX, verify=False)
    for name in listed:
        if listed[name][0] != "string":
            np.testing.assert_array_equal(arrays[name], unverified[name])
    some = read_variables(PREFIX, [f"final_classify/bias{SUFFIX}", sliced[0]])
    assert list(some) == [f"final_classify/bias{SUFFIX}", sliced[0]]
    np.testing.assert_array_equal(some[sliced[0]], arrays[sliced[0]])


@pytest.mark.parametrize("num_shards", [1, 2, 5])
def test_dtypes_and_shards_round_trip(tmp_path, num_shards):
    rng = np.random.default_rng(1)
    tensors = {
        "a/f32": rng.standard_normal((3, 5)).astype(np.float32),
        "a/f64": rng.standard_normal((2, 3, 4)) * 1e300,
        "b/i64": rng.integers(-2**62, 2**62, (7,), dtype=np.int64),
        "b/i32": rng.integers(-2**31, 2**31 - 1, (2, 2), dtype=np.int32),
        "c/bool": rng.random((4, 3)) > 0.5,
        "c/scalar": np.array(3.5, dtype=np.float64),
        "d/empty": np.zeros((0, 3), np.float32),
        "e/big": rng.standard_normal(5000).astype(np.float32),   # crc over the numpy lane path
    }
    write_bundle(tmp_path / "m", tensors, num_shards=num_shards)
    assert list_variables(tmp_path / "m") == {k: (str(v.dtype), v.shape) for k, v in sorted(tensors.items())}
    got = read_variables(tmp_path / "m")
    for name, arr in tensors.items():
        assert got[name].dtype == arr.dtype and got[name].shape == arr.shape
        np.testing.assert_array_equal(got[name], arr)


def test_unsupported_dtype_and_big_endian_are_refused(tmp_path):
    write_bundle(tmp_path / "h", {"half": np.ones(3, np.float16), "ok": np.ones(2, np.float32)})
    assert list_variables(tmp_path / "h")["half"] == ("float16", (3,))
    assert read_variables(tmp_path / "h", ["ok"])["ok"].tolist() == [1.0, 1.0]
    with pytest.raises(TFCheckpointError, match=r"'half' has dtype float16; supported: float32"):
        read_variables(tmp_path / "h")
    write_bundle(tmp_path / "be", {"x": np.ones(2, np.float32)}, endianness=1)
    with pytest.raises(TFCheckpointError, match="big-endian"):
        list_variables(tmp_path / "be")


def test_missing_and_truncated_shards(tmp_path):
    prefix = copy_fixture(tmp_path)
    shard1 = Path(f"{prefix}.data-00001-of-00003")
    shard1.unlink()
    assert len(list_variables(prefix)) == 81                # the index alone still lists
    with pytest.raises(TFCheckpointError, match=r"shard .*Model\.data-00001-of-00003 is missing \(shard 1 of 3"):
        read_variables(prefix)
    shutil.copy(FIXTURE / shard1.name, shard1)
    size = shard1.stat().st_size
    with open(shard1, "r+b") as f:
        f.truncate(size - 100)
    with pytest.raises(TFCheckpointError, match=rf"data-00001-of-00003 is truncated: {size - 100} bytes, "
                                                rf"its tensors need {size}"):
        read_variables(prefix)


def test_flipped_byte_in_a_shard_is_a_crc_mismatch(tmp_path):
    prefix = copy_fixture(tmp_path)
    shard = Path(f"{prefix}.data-00000-of-00003")
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0x01
    shard.write_bytes(bytes(data))
    with pytest.raises(TFCheckpointError, match=r"data-00000-of-00003: crc32c mismatch for '.+' \(bytes \d+\.\.\d+\)"):
        read_variables(prefix)
    assert len(read_variables(prefix, verify=False)) == 81  # verify=False reads the damaged bytes


def test_flipped_string_byte_is_a_crc_mismatch(tmp_path):
    prefix = copy_fixture(tmp_path)
    e = read_index(prefix).entries["_CHECKPOINTABLE_OBJECT_GRAPH"]
    shard = Path(f"{prefix}.data-{e.shard_id:05d}-of-00003")
    data = bytearray(shard.read_bytes())
    data[e.offset + e.size - 10] ^= 0x20
    shard.write_bytes(bytes(data))
    with pytest.raises(TFCheckpointError, match="_CHECKPOINTABLE_OBJECT_GRAPH.*crc32c mismatch"):
        read_variables(prefix, ["_CHECKPOINTABLE_OBJECT_GRAPH"])


def test_damaged_index(tmp_path):
    prefix = copy_fixture(tmp_path)
    index = Path(f"{prefix}.index")
    good = index.read_bytes()
    damaged = bytearray(good)
    damaged[100] ^= 0x04                                     # inside the first data block
    index.write_bytes(bytes(damaged))
    with pytest.raises(TFCheckpointError, match=r"Model\.index: crc32c mismatch in the block at byte 0"):
        list_variables(prefix)
    index.write_bytes(good[:-10])
    with pytest.raises(TFCheckpointError, match="no SSTable magic number"):
        list_variables(prefix)
    index.write_bytes(good[:20])
    with pytest.raises(TFCheckpointError, match="too short"):
        list_variables(prefix)
    index.unlink()
    with pytest.raises(TFCheckpointError, match=r"Model\.index does not exist"):
        list_variables(prefix)


def test_unknown_name_is_named():
    with pytest.raises(TFCheckpointError, match="no variable named 'nope'"):
        read_variables(PREFIX, ["nope"])
