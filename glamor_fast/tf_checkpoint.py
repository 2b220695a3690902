"""Read TensorFlow tensor-bundle checkpoints (``PREFIX.index`` + ``PREFIX.data-NNNNN-of-MMMMM``)
with numpy alone: no TensorFlow, no protobuf.

Format (tensorflow/core/util/tensor_bundle, tensorflow/core/lib/io/table*):
- ``PREFIX.index`` is a LevelDB-format SSTable, uncompressed. Its 48-byte footer holds the
  metaindex and index block handles (varint offset, varint size) and the magic
  0xdb4775248b80fb57. Every block is followed by a 5-byte trailer: compression type (0 = none)
  and the masked crc32c of block + type byte. A block is a run of entries ``varint shared,
  varint non_shared, varint value_len, key[shared:] delta, value`` with prefix-compressed keys,
  then uint32 restart offsets and their uint32 count. The index block maps keys to handles of the
  data blocks.
- In the data blocks, key ``""`` holds a ``BundleHeaderProto`` (num_shards = 1, endianness = 2)
  and every other key (a variable name) a ``BundleEntryProto`` (dtype = 1, shape = 2,
  shard_id = 3, offset = 4, size = 5, crc32c = 6 (fixed32), slices = 7).
- A tensor is ``size`` raw little-endian bytes at ``offset`` of shard ``shard_id``, file
  ``PREFIX.data-{shard_id:05d}-of-{num_shards:05d}``; ``crc32c`` is the masked CRC-32C of them.

Errors are ``TFCheckpointError`` (a ValueError) with one line naming the file and what is wrong.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional

import numpy as np

__all__ = ["TFCheckpointError", "TensorEntry", "crc32c", "list_variables", "masked_crc32c", "read_index",
           "read_variables"]

TABLE_MAGIC = 0xDB4775248B80FB57
FOOTER_LEN = 48
BLOCK_TRAILER_LEN = 5
HEADER_KEY = b""

# TF DataType enum value -> (name, numpy dtype or None for strings). Others are refused by name.
DTYPES = {1: ("float32", np.dtype("<f4")), 2: ("float64", np.dtype("<f8")), 3: ("int32", np.dtype("<i4")),
          9: ("int64", np.dtype("<i8")), 10: ("bool", np.dtype("?")), 7: ("string", None)}
OTHER_DTYPE_NAMES = {4: "uint8", 5: "int16", 6: "int8", 8: "complex64", 14: "bfloat16", 17: "uint16",
                     18: "complex128", 19: "float16", 20: "resource", 21: "variant", 22: "uint32",
                     23: "uint64"}


class TFCheckpointError(ValueError):
    """A TF checkpoint that cannot be read: missing, truncated, corrupt, or unsupported."""


# ----------------------------------------------------------------------------------- crc32c
def _make_table() -> np.ndarray:
    poly = 0x82F63B78  # Castagnoli, reflected
    t = np.arange(256, dtype=np.uint32)
    for _ in range(8):
        t = np.where(t & 1, (t >> 1) ^ np.uint32(poly), t >> 1).astype(np.uint32)
    return t


_TABLE = _make_table()                         # (256,) uint32: one byte of input through the register
_TABLE_LIST = _TABLE.tolist()
_ZERO_SHIFT_CACHE: dict[int, tuple] = {}


def _raw_update_scalar(state: int, data: bytes) -> int:
    t = _TABLE_LIST
    for b in data:
        state = t[(state ^ b) & 0xFF] ^ (state >> 8)
    return state


def _zero_shift_tables(n: int) -> tuple:
    """4 lists of 256 ints: the (linear) map "run the register through n zero bytes", by state byte."""
    if n not in _ZERO_SHIFT_CACHE:
        basis = (np.uint32(1) << np.arange(32, dtype=np.uint32)).astype(np.uint32)   # (32,) states
        for _ in range(n):
            basis = _TABLE[basis & 0xFF] ^ (basis >> 8)
        tables = []
        for k in range(4):
            idx = np.arange(256, dtype=np.uint32)
            out = np.zeros(256, dtype=np.uint32)
            for bit in range(8):
                out ^= np.where((idx >> bit) & 1, basis[8 * k + bit], np.uint32(0)).astype(np.uint32)
            tables.append(out.tolist())
        if len(_ZERO_SHIFT_CACHE) > 64:
            _ZERO_SHIFT_CACHE.clear()
        _ZERO_SHIFT_CACHE[n] = tuple(tables)
    return _ZERO_SHIFT_CACHE[n]


def crc32c(data) -> int:
    """CRC-32C (Castagnoli) of ``data`` (bytes-like), as TF and LevelDB compute it.

    The register update is linear over GF(2), so the data is cut into K lanes of L bytes that
    numpy advances together (one table lookup per byte column), and the lanes' registers are
    then chained: state <- shift_L(state) ^ lane, shift_L being "L zero bytes" as 4 byte tables.
    """
    buf = np.frombuffer(memoryview(data).cast("B"), dtype=np.uint8)
    n = buf.size
    state = 0xFFFFFFFF
    if n < 4096:
        return _raw_update_scalar(state, buf.tobytes()) ^ 0xFFFFFFFF
    L = max(256, int(np.sqrt(n)))
    K = n // L
    lanes = buf[: K * L].reshape(K, L).T.copy()          # (L, K) uint8: column j is byte j of every lane
    reg = np.zeros(K, dtype=np.uint32)
    for row in lanes:
        reg = _TABLE[(reg ^ row) & 0xFF] ^ (reg >> 8)
    t0, t1, t2, t3 = _zero_shift_tables(L)
    for r in reg.tolist():
        state = t0[state & 0xFF] ^ t1[(state >> 8) & 0xFF] ^ t2[(state >> 16) & 0xFF] ^ t3[state >> 24] ^ r
    state = _raw_update_scalar(state, buf[K * L:].tobytes())
    return state ^ 0xFFFFFFFF


def masked_crc32c(data) -> int:
    """LevelDB/TF's masked CRC: rotate right by 15 and add 0xa282ead8 (mod 2**32)."""
    c = crc32c(data)
    return (((c >> 15) | (c << 17)) + 0xA282EAD8) & 0xFFFFFFFF


# ----------------------------------------------------------------------------- protobuf wire
def _varint(buf: bytes, pos: int, where: str) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise TFCheckpointError(f"{where}: truncated varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise TFCheckpointError(f"{where}: malformed varint")


def _fields(msg: bytes, where: str):
    """Yields (field number, wire type, value): int for varint/fixed, bytes for length-delimited."""
    pos = 0
    while pos < len(msg):
        tag, pos = _varint(msg, pos, where)
        field, wire = tag >> 3, tag & 7
        if wire == 0:
            value, pos = _varint(msg, pos, where)
        elif wire == 1:
            value, pos = int.from_bytes(msg[pos:pos + 8], "little"), pos + 8
        elif wire == 5:
            value, pos = int.from_bytes(msg[pos:pos + 4], "little"), pos + 4
        elif wire == 2:
            length, pos = _varint(msg, pos, where)
            value, pos = msg[pos:pos + length], pos + length
        else:
            raise TFCheckpointError(f"{where}: unsupported protobuf wire type {wire}")
        if pos > len(msg):
            raise TFCheckpointError(f"{where}: truncated protobuf message")
        yield field, wire, value


def _signed64(v: int) -> int:
    return v - (1 << 64) if v >= 1 << 63 else v


@dataclass(frozen=True)
class TensorEntry:
    """One BundleEntryProto: where a tensor's bytes are and what they hold."""

    name: str
    dtype: str                   # "float32", "int64", "string", ... (TF's name for unsupported ones)
    dtype_enum: int
    shape: tuple[int, ...]
    shard_id: int
    offset: int
    size: int
    crc32c: Optional[int]        # masked, None when the entry has none
    slices: tuple = ()           # ((start, length or -1 for all), ...) per slice; () when stored whole


def _parse_shape(msg: bytes, where: str) -> tuple[int, ...]:
    dims = []
    for field, _, value in _fields(msg, where):
        if field == 2:                                   # Dim { int64 size = 1; string name = 2; }
            size = 0
            for f2, _, v2 in _fields(value, where):
                if f2 == 1:
                    size = _signed64(v2)
            dims.append(size)
        elif field == 3 and value:
            raise TFCheckpointError(f"{where}: tensor shape of unknown rank")
    return tuple(dims)


def _parse_slice(msg: bytes, where: str) -> tuple:
    """TensorSliceProto { repeated Extent extent = 1 }, Extent { int64 start = 1; int64 length = 2 }."""
    extents = []
    for field, _, value in _fields(msg, where):
        if field == 1:
            start, length = 0, -1                        # no length: the whole dimension
            for f2, _, v2 in _fields(value, where):
                if f2 == 1:
                    start = _signed64(v2)
                elif f2 == 2:
                    length = _signed64(v2)
            extents.append((start, length))
    return tuple(extents)


def _parse_entry(name: str, msg: bytes, where: str) -> TensorEntry:
    dtype_enum, shape, shard, offset, size, crc, slices = 0, (), 0, 0, 0, None, []
    for field, _, value in _fields(msg, where):
        if field == 1:
            dtype_enum = value
        elif field == 2:
            shape = _parse_shape(value, where)
        elif field == 3:
            shard = value
        elif field == 4:
            offset = _signed64(value)
        elif field == 5:
            size = _signed64(value)
        elif field == 6:
            crc = value
        elif field == 7:
            slices.append(_parse_slice(value, where))
    dtype = DTYPES[dtype_enum][0] if dtype_enum in DTYPES else OTHER_DTYPE_NAMES.get(dtype_enum, f"dtype#{dtype_enum}")
    return TensorEntry(name, dtype, dtype_enum, shape, shard, offset, size, crc, tuple(slices))


# ---------------------------------------------------------------------------------- SSTable
def _block(data: bytes, offset: int, size: int, where: str) -> bytes:
    end = offset + size + BLOCK_TRAILER_LEN
    if offset < 0 or end > len(data):
        raise TFCheckpointError(f"{where}: block at {offset} (+{size} bytes) runs past the end of the file "
                                f"({len(data)} bytes): truncated")
    contents, kind = data[offset:offset + size], data[offset + size]
    stored = int.from_bytes(data[offset + size + 1:end], "little")
    if masked_crc32c(data[offset:offset + size + 1]) != stored:
        raise TFCheckpointError(f"{where}: crc32c mismatch in the block at byte {offset}: the file is corrupt")
    if kind != 0:
        raise TFCheckpointError(f"{where}: block at byte {offset} is compressed (type {kind}); "
                                "only uncompressed tables (as TF writes bundles) are supported")
    return contents


def _block_entries(block: bytes, where: str):
    """Yields (key, value) of one block, undoing the prefix compression."""
    if len(block) < 4:
        raise TFCheckpointError(f"{where}: block too short")
    num_restarts = int.from_bytes(block[-4:], "little")
    limit = len(block) - 4 * (num_restarts + 1)
    if limit < 0:
        raise TFCheckpointError(f"{where}: corrupt block (restart count {num_restarts})")
    pos, key = 0, b""
    while pos < limit:
        shared, pos = _varint(block, pos, where)
        non_shared, pos = _varint(block, pos, where)
        value_len, pos = _varint(block, pos, where)
        if shared > len(key) or pos + non_shared + value_len > limit:
            raise TFCheckpointError(f"{where}: corrupt block entry at byte {pos}")
        key = key[:shared] + block[pos:pos + non_shared]
        pos += non_shared
        yield key, block[pos:pos + value_len]
        pos += value_len


def _index_path(prefix) -> Path:
    prefix = os.fspath(prefix)
    if prefix.endswith(".index"):
        prefix = prefix[: -len(".index")]
    return Path(prefix + ".index")


def _table_items(path: Path):
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise TFCheckpointError(f"TF checkpoint index {path} does not exist") from None
    except OSError as exc:
        raise TFCheckpointError(f"cannot read TF checkpoint index {path}: {exc.strerror or exc}") from None
    where = str(path)
    if len(data) < FOOTER_LEN:
        raise TFCheckpointError(f"{where}: {len(data)} bytes, too short for a TF checkpoint index (truncated?)")
    footer = data[-FOOTER_LEN:]
    if int.from_bytes(footer[-8:], "little") != TABLE_MAGIC:
        raise TFCheckpointError(f"{where}: not a TF checkpoint index (no SSTable magic number at its end; "
                                "truncated or another kind of file)")
    pos = 0
    _, pos = _varint(footer, pos, where)                 # metaindex handle: unused
    _, pos = _varint(footer, pos, where)
    index_off, pos = _varint(footer, pos, where)
    index_size, pos = _varint(footer, pos, where)
    index_block = _block(data, index_off, index_size, where)
    for _, handle in _block_entries(index_block, where):
        off, p = _varint(handle, 0, where)
        size, _ = _varint(handle, p, where)
        yield from _block_entries(_block(data, off, size, where), where)


# Keys of slice entries: OrderedCode (tensorflow/core/lib/strings/ordered_code.cc) of
# (0, name, rank, start_0, length_0, ...), as tensor_slice's EncodeTensorNameSlice writes them.
def _ordered_uint(v: int) -> bytes:
    body = v.to_bytes((v.bit_length() + 7) // 8, "big") if v else b""
    return bytes([len(body)]) + body


def _ordered_int(v: int) -> bytes:
    x = ~v if v < 0 else v
    n = next(n for n in range(1, 11) if n == 10 or x < 1 << (7 * n - 1))
    raw = bytearray((v & ((1 << (8 * n)) - 1)).to_bytes(n, "big"))   # two's complement in n bytes
    head = (((1 << (n + 1)) - 2) << (7 * n - 1)).to_bytes(n, "big")  # n ones then a zero, on top
    return bytes(a ^ b for a, b in zip(raw, head))


def _slice_key(name: str, extents: tuple) -> bytes:
    escaped = name.encode("utf-8").replace(b"\xff", b"\xff\x00").replace(b"\x00", b"\x00\xff")
    key = b"\x00" + escaped + b"\x00\x01" + _ordered_uint(len(extents))
    for start, length in extents:
        key += _ordered_int(start) + _ordered_int(length)
    return key


@dataclass(frozen=True)
class BundleIndex:
    path: Path
    num_shards: int
    entries: dict            # name -> TensorEntry, in the file's (sorted) order
    slice_entries: dict      # encoded slice key -> TensorEntry of that slice's bytes


def read_index(prefix) -> BundleIndex:
    """Parse ``PREFIX.index``: the header and every entry (the data shards are not touched)."""
    path = _index_path(prefix)
    where = str(path)
    num_shards, entries, slice_entries, seen_header = 1, {}, {}, False
    for key, value in _table_items(path):
        if key == HEADER_KEY:
            seen_header = True
            for field, _, v in _fields(value, where):
                if field == 1:
                    num_shards = v
                elif field == 2 and v != 0:
                    raise TFCheckpointError(f"{where}: the checkpoint is big-endian; only little-endian is supported")
            continue
        if key[:1] == b"\x00":                           # one slice of a tensor saved in slices
            slice_entries[key] = _parse_entry(key.hex(), value, f"{where} (a slice entry)")
            continue
        try:
            name = key.decode("utf-8")
        except UnicodeDecodeError:
            raise TFCheckpointError(f"{where}: a key is not UTF-8 text: {key[:40]!r}") from None
        entries[name] = _parse_entry(name, value, f"{where} (entry {name!r})")
    if not seen_header:
        raise TFCheckpointError(f"{where}: no bundle header entry: not a TF checkpoint index")
    if num_shards < 1:
        raise TFCheckpointError(f"{where}: header says {num_shards} shards")
    for e in (*entries.values(), *slice_entries.values()):
        if not 0 <= e.shard_id < num_shards:
            raise TFCheckpointError(f"{where}: entry {e.name!r} is in shard {e.shard_id} of {num_shards}")
    return BundleIndex(path, num_shards, entries, slice_entries)


# --------------------------------------------------------------------------------- public API
def list_variables(prefix) -> dict[str, tuple[str, tuple[int, ...]]]:
    """{name: (dtype name, shape)} of every tensor in the checkpoint, from ``PREFIX.index`` alone.

    ``prefix`` is the path without ``.index`` (``.../Model``); a path ending in ``.index`` works too.
    A tensor saved in slices is listed once, with its full shape.
    """
    return {name: (e.dtype, e.shape) for name, e in read_index(prefix).entries.items()}


def _shard_path(index: BundleIndex, shard: int) -> Path:
    base = str(index.path)[: -len(".index")]
    return Path(f"{base}.data-{shard:05d}-of-{index.num_shards:05d}")


def _decode_strings(raw: bytes, count: int, crc: Optional[int], where: str) -> np.ndarray:
    """TF's string tensor: varint64 lengths, the masked crc32c of the lengths (as uint32 LE), the bytes.

    The entry's crc32c (``crc``, masked; None: not checked) covers the lengths as uint32 LE
    (uint64 above 2**32), the 4 length-checksum bytes and the string bytes, in that order.
    """
    pos, lengths = 0, []
    for _ in range(count):
        n, pos = _varint(raw, pos, where)
        lengths.append(n)
    length_crc, pos = raw[pos:pos + 4], pos + 4
    out = np.empty(count, dtype=object)
    for i, n in enumerate(lengths):
        out[i] = raw[pos:pos + n]
        pos += n
    if pos != len(raw):
        raise TFCheckpointError(f"{where}: string tensor holds {len(raw)} bytes, its lengths say {pos}")
    if crc is not None:
        sizes = b"".join(n.to_bytes(4 if n <= 0xFFFFFFFF else 8, "little") for n in lengths)
        if masked_crc32c(sizes + length_crc + b"".join(out.tolist())) != crc:
            raise TFCheckpointError(f"{where}: crc32c mismatch: the file is corrupt")
    return out


def _pieces(index: BundleIndex, e: TensorEntry) -> list[tuple[TensorEntry, tuple]]:
    """[(entry holding bytes, index expression into the full tensor)] for one variable."""
    where = str(index.path)
    if e.dtype_enum not in DTYPES:
        raise TFCheckpointError(f"{where}: variable {e.name!r} has dtype {e.dtype}; supported: "
                                f"{', '.join(v[0] for v in DTYPES.values())}")
    if not e.slices:
        return [(e, ())]
    if DTYPES[e.dtype_enum][1] is None:
        raise TFCheckpointError(f"{where}: variable {e.name!r} is a string tensor saved in slices: not supported")
    pieces = []
    for extents in e.slices:
        if len(extents) != len(e.shape):
            raise TFCheckpointError(f"{where}: a slice of {e.name!r} has rank {len(extents)}, the tensor {len(e.shape)}")
        part = index.slice_entries.get(_slice_key(e.name, extents))
        if part is None:
            raise TFCheckpointError(f"{where}: the slice {list(extents)} of {e.name!r} has no entry: the index is corrupt")
        region = tuple(slice(0, dim) if length < 0 else slice(start, start + length)
                       for (start, length), dim in zip(extents, e.shape))
        pieces.append((TensorEntry(e.name, e.dtype, e.dtype_enum, tuple(len(range(dim)[r]) for r, dim in zip(region, e.shape)),
                                   part.shard_id, part.offset, part.size, part.crc32c), region))
    return pieces


def read_variables(prefix, names: Optional[Iterable[str]] = None, verify: bool = True) -> dict[str, np.ndarray]:
    """{name: numpy array} for ``names`` (default: every tensor), C-ordered with TF's shapes.

    Dtypes: float32, float64, int32, int64, bool, and string (an object array of bytes);
    others raise TFCheckpointError. Tensors saved in slices (TF's sharding policies) are
    reassembled. ``verify``: check the masked crc32c of every stored piece (default).
    Shards are memory-mapped, so reading a few names reads only their bytes.
    """
    index = read_index(prefix)
    where_index = str(index.path)
    if names is None:
        wanted = list(index.entries)
    else:
        wanted = list(names)
        unknown = [n for n in wanted if n not in index.entries]
        if unknown:
            raise TFCheckpointError(f"{where_index}: no variable named {', '.join(map(repr, unknown[:5]))}"
                                    + (f" (and {len(unknown) - 5} more)" if len(unknown) > 5 else ""))
    by_shard: dict[int, list] = {}
    out: dict[str, np.ndarray] = {}
    covered: dict[str, np.ndarray] = {}
    for name in wanted:
        e = index.entries[name]
        for piece, region in _pieces(index, e):
            by_shard.setdefault(piece.shard_id, []).append((piece, region))
        if e.slices:
            out[name] = np.zeros(e.shape, dtype=DTYPES[e.dtype_enum][1])
            covered[name] = np.zeros(e.shape, dtype=bool)
    for shard, pieces in sorted(by_shard.items()):
        path = _shard_path(index, shard)
        try:
            file_size = path.stat().st_size
        except FileNotFoundError:
            raise TFCheckpointError(f"TF checkpoint shard {path} is missing (shard {shard} of "
                                    f"{index.num_shards}; it holds {pieces[0][0].name!r})") from None
        need = max(p.offset + p.size for p, _ in pieces)
        if file_size < need:
            raise TFCheckpointError(f"TF checkpoint shard {path} is truncated: {file_size} bytes, "
                                    f"its tensors need {need}")
        data = np.memmap(path, dtype=np.uint8, mode="r") if file_size else np.zeros(0, np.uint8)
        for e, region in pieces:
            raw = data[e.offset:e.offset + e.size]
            npdtype = DTYPES[e.dtype_enum][1]
            if verify and npdtype is not None and e.crc32c is not None and masked_crc32c(raw) != e.crc32c:
                raise TFCheckpointError(f"TF checkpoint shard {path}: crc32c mismatch for {e.name!r} "
                                        f"(bytes {e.offset}..{e.offset + e.size}): the file is corrupt")
            count = int(np.prod(e.shape, dtype=np.int64))
            where = f"TF checkpoint shard {path} ({e.name!r})"
            if npdtype is None:
                out[e.name] = _decode_strings(bytes(raw), count, e.crc32c if verify else None, where).reshape(e.shape)
                continue
            if e.size != count * npdtype.itemsize:
                raise TFCheckpointError(f"{where}: {e.size} bytes for a {e.dtype} tensor of shape "
                                        f"{e.shape} ({count * npdtype.itemsize} bytes expected)")
            arr = np.array(raw).view(npdtype).reshape(e.shape)     # a writable, aligned copy
            if e.name in covered:
                out[e.name][region] = arr
                covered[e.name][region] = True
            else:
                out[e.name] = arr.astype(npdtype.newbyteorder("="), copy=False)
        del data
    for name, mask in covered.items():
        if not mask.all():
            raise TFCheckpointError(f"{where_index}: the slices of {name!r} cover {int(mask.sum())} of its "
                                    f"{mask.size} elements")
    return {name: out[name] for name in wanted}
