"""A minimal TensorFlow tensor-bundle writer for tests: one uncompressed SSTable data block, no
slices. It lets tests make checkpoints with dtypes, shard counts and damage that the real
fixture (tests/fixtures/tf-glamor-net, written by TensorFlow) does not have."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from glamor_fast.tf_checkpoint import TABLE_MAGIC, masked_crc32c

DTYPE_ENUMS = {np.dtype("float32"): 1, np.dtype("float64"): 2, np.dtype("int32"): 3, np.dtype("int64"): 9,
               np.dtype("bool"): 10, np.dtype("float16"): 19, np.dtype("uint8"): 4}


def varint(v: int) -> bytes:
    out = bytearray()
    while True:
        b = v & 0x7F
        v >>= 7
        if v:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def field_varint(num: int, v: int) -> bytes:
    return varint(num << 3) + varint(v)


def field_bytes(num: int, data: bytes) -> bytes:
    return varint(num << 3 | 2) + varint(len(data)) + data


def entry_proto(dtype_enum: int, shape, shard: int, offset: int, size: int, crc: int) -> bytes:
    shape_msg = b"".join(field_bytes(2, field_varint(1, d)) for d in shape)
    return (field_varint(1, dtype_enum) + field_bytes(2, shape_msg) + field_varint(3, shard)
            + field_varint(4, offset) + field_varint(5, size) + varint(6 << 3 | 5) + crc.to_bytes(4, "little"))


def _block(items) -> bytes:
    body = b"".join(varint(0) + varint(len(k)) + varint(len(v)) + k + v for k, v in items)
    return body + (0).to_bytes(4, "little") + (1).to_bytes(4, "little")


def _with_trailer(block: bytes) -> bytes:
    return block + b"\x00" + masked_crc32c(block + b"\x00").to_bytes(4, "little")


def write_bundle(prefix, tensors: dict, num_shards: int = 1, endianness: int = 0) -> Path:
    """Write ``tensors`` ({name: numpy array}) as PREFIX.index + PREFIX.data-*-of-*; round-robin over shards."""
    prefix = str(prefix)
    shards = [bytearray() for _ in range(num_shards)]
    items = []
    for i, name in enumerate(sorted(tensors)):
        arr = np.array(tensors[name], order="C")  # keeps 0-d arrays 0-d
        raw = arr.astype(arr.dtype.newbyteorder("<")).tobytes()
        shard = i % num_shards
        offset = len(shards[shard])
        shards[shard] += raw
        items.append((name.encode(), entry_proto(DTYPE_ENUMS[arr.dtype], arr.shape, shard, offset, len(raw),
                                                 masked_crc32c(raw))))
    header = field_varint(1, num_shards) + field_varint(2, endianness) + field_bytes(3, field_varint(1, 1))
    data_block = _with_trailer(_block([(b"", header)] + items))
    meta_block = _with_trailer(_block([]))
    meta_off = len(data_block)
    index_off = meta_off + len(meta_block)
    last_key = items[-1][0] if items else b""
    index_block = _with_trailer(_block([(last_key, varint(0) + varint(len(data_block) - 5))]))
    handles = varint(meta_off) + varint(len(meta_block) - 5) + varint(index_off) + varint(len(index_block) - 5)
    footer = handles.ljust(40, b"\x00") + TABLE_MAGIC.to_bytes(8, "little")
    Path(prefix + ".index").write_bytes(data_block + meta_block + index_block + footer)
    for s, data in enumerate(shards):
        Path(f"{prefix}.data-{s:05d}-of-{num_shards:05d}").write_bytes(bytes(data))
    return Path(prefix + ".index")
