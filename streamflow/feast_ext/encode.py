"""Column-wise encoders for what Feast writes to an online store.

Feast's materialization turns every value into a `ValueProto` object, one Python call per
value (`feast.utils._convert_arrow_to_proto`), before the store writes a byte. The bytes it finally stores are simple -- a tag and a
fixed-width or length-prefixed payload -- so this module builds them for a whole Arrow column at
once with numpy and Arrow compute. Every encoder is checked byte for byte against
`ValueProto.SerializeToString()`, `serialize_entity_key` and `Timestamp.SerializeToString()` in
tests/unit/test_encode.py; a type it does not know returns None and the caller falls back to Feast.
"""

from __future__ import annotations

import functools

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from feast.infra.key_encoding_utils import serialize_entity_key
from feast.protos.feast.types.EntityKey_pb2 import EntityKey as EntityKeyProto
from feast.protos.feast.types.Value_pb2 import Value as ValueProto
from feast.value_type import ValueType

# protobuf tags of feast.types.Value's oneof: (field number << 3) | wire type
_TAG_STRING = 0x12  # string_val = 2, length-delimited
_TAG_INT64 = 0x20  # int64_val = 4, varint
_TAG_DOUBLE = 0x29  # double_val = 5, 64-bit
_TAG_BOOL = 0x38  # bool_val = 7, varint
_MAX_VARINT = 10


def _ragged(mat: np.ndarray, lengths: np.ndarray) -> pa.BinaryArray:
    """Row i of the uint8 matrix `mat`, cut to lengths[i] bytes, as one binary array (no nulls)."""
    keep = np.arange(mat.shape[1]) < lengths[:, None]
    data = np.ascontiguousarray(mat[keep])
    offsets = np.zeros(len(lengths) + 1, dtype=np.int32)
    np.cumsum(lengths, out=offsets[1:])
    return pa.BinaryArray.from_buffers(pa.binary(), len(lengths), [None, pa.py_buffer(offsets), pa.py_buffer(data)])


def _tagged_varints(tag: int, values: np.ndarray, present: np.ndarray) -> pa.BinaryArray:
    """tag + varint(value) where present, empty bytes elsewhere (int64 as two's complement)."""
    x = values.astype(np.int64).view(np.uint64).copy()
    n = len(x)
    mat = np.zeros((n, 1 + _MAX_VARINT), dtype=np.uint8)
    mat[:, 0] = tag
    lengths = np.full(n, 2, dtype=np.int64)
    for j in range(_MAX_VARINT):
        mat[:, 1 + j] = (x & np.uint64(0x7F)).astype(np.uint8)
        x >>= np.uint64(7)
        more = x != 0
        if not more.any():
            break
        mat[more, 1 + j] |= 0x80
        lengths += more
    lengths[~present] = 0
    return _ragged(mat, lengths)


def _present(col: pa.Array) -> np.ndarray:
    return ~np.asarray(col.is_null(nan_is_null=pa.types.is_floating(col.type)), dtype=bool)


def _as_array(col: pa.Array | pa.ChunkedArray) -> pa.Array:
    return col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col


def feast_rounds(col: pa.Array | pa.ChunkedArray) -> bool:
    """An integer column Feast converts through float64 (it holds nulls), with a value beyond
    float64's exact integers: Feast's stored values are rounded, so only Feast may encode it."""
    if not pa.types.is_integer(col.type) or not col.null_count:
        return False
    extremes = pc.min_max(col)
    return any(v is not None and abs(v) > 2**53 for v in (extremes["min"].as_py(), extremes["max"].as_py()))


def encode_values(col: pa.Array | pa.ChunkedArray, value_type: ValueType) -> pa.BinaryArray | None:
    """`ValueProto` bytes of every value of an Arrow column, as Feast would write them, or None
    when the type is not one this encoder knows (the caller then uses Feast's own conversion).
    A null (or NaN) is an empty `Value` (b""), as in Feast."""
    col = _as_array(col)
    n = len(col)
    if n == 0:
        return pa.array([], type=pa.binary())
    present = _present(col)
    if value_type == ValueType.DOUBLE and (pa.types.is_floating(col.type) or pa.types.is_integer(col.type)):
        vals = np.asarray(col.cast(pa.float64()).fill_null(0.0), dtype="<f8")
        mat = np.empty((n, 9), dtype=np.uint8)
        mat[:, 0] = _TAG_DOUBLE
        mat[:, 1:] = vals.view(np.uint8).reshape(n, 8)
        return _ragged(mat, np.where(present, 9, 0))
    if value_type == ValueType.INT64 and pa.types.is_integer(col.type):
        if feast_rounds(col):
            return None  # Feast reads such a column through float64 and rounds: let it do so
        return _tagged_varints(_TAG_INT64, np.asarray(col.cast(pa.int64()).fill_null(0)), present)
    if value_type == ValueType.BOOL and pa.types.is_boolean(col.type):
        mat = np.empty((n, 2), dtype=np.uint8)
        mat[:, 0] = _TAG_BOOL
        mat[:, 1] = np.asarray(col.fill_null(False), dtype=np.uint8)
        return _ragged(mat, np.where(present, 2, 0))
    if value_type == ValueType.STRING and (pa.types.is_string(col.type) or pa.types.is_large_string(col.type)):
        raw = col.cast(pa.binary())
        lengths = np.asarray(pc.binary_length(raw).fill_null(0), dtype=np.int64)
        head = _tagged_varints(_TAG_STRING, lengths, np.ones(n, dtype=bool))
        return pc.binary_join_element_wise(head, raw, b"").fill_null(b"")
    return None


@functools.lru_cache(maxsize=64)
def entity_key_prefix(join_key: str, version: int) -> bytes | None:
    """The bytes `serialize_entity_key` writes before a single string join key's value length."""
    probe = serialize_entity_key(
        EntityKeyProto(join_keys=[join_key], entity_values=[ValueProto(string_val="")]),
        entity_key_serialization_version=version,
    )
    if version < 3 or not probe.endswith(b"\x00\x00\x00\x00"):
        return None
    return probe[:-4]


def encode_entity_keys(col: pa.Array | pa.ChunkedArray, join_key: str, version: int) -> pa.BinaryArray | None:
    """`serialize_entity_key` of every value of a single string join key column, or None."""
    col = _as_array(col)
    prefix = entity_key_prefix(join_key, version)
    if prefix is None or not (pa.types.is_string(col.type) or pa.types.is_large_string(col.type)) or col.null_count:
        return None
    raw = col.cast(pa.binary())
    return pc.binary_join_element_wise(prefix, le32(pc.binary_length(raw)), raw, b"")


def le32(lengths: pa.Array | np.ndarray) -> pa.BinaryArray:
    """Little-endian uint32 of each value, 4 bytes each."""
    vals = np.asarray(lengths, dtype="<u4")
    return _fixed(vals.view(np.uint8).reshape(len(vals), 4))


def be32(lengths: pa.Array | np.ndarray) -> pa.BinaryArray:
    """Big-endian int32 of each value (PostgreSQL's binary COPY field lengths)."""
    vals = np.asarray(lengths, dtype=">i4")
    return _fixed(vals.view(np.uint8).reshape(len(vals), 4))


def be64(values: np.ndarray) -> pa.BinaryArray:
    vals = np.asarray(values, dtype=">i8")
    return _fixed(vals.view(np.uint8).reshape(len(vals), 8))


def _fixed(mat: np.ndarray) -> pa.BinaryArray:
    n, width = mat.shape
    return _ragged(np.ascontiguousarray(mat), np.full(n, width, dtype=np.int64))


def epoch_micros(col: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """Microseconds since 1970-01-01 UTC of a timestamp column (naive values are UTC, as in Feast)."""
    col = _as_array(col)
    if pa.types.is_timestamp(col.type):
        return np.asarray(col.cast(pa.timestamp("us", tz=col.type.tz)).cast(pa.int64()), dtype=np.int64)
    if pa.types.is_date(col.type):
        return np.asarray(col.cast(pa.timestamp("us")).cast(pa.int64()), dtype=np.int64)
    raise TypeError(f"not a timestamp column: {col.type}")


def encode_timestamps(micros: np.ndarray) -> pa.BinaryArray:
    """`google.protobuf.Timestamp.SerializeToString()` of each instant (seconds = 1, nanos = 2)."""
    seconds = np.floor_divide(micros, 1_000_000)
    nanos = (micros - seconds * 1_000_000) * 1000
    secs = _tagged_varints(0x08, seconds, seconds != 0)
    ns = _tagged_varints(0x10, nanos, nanos != 0)
    return pc.binary_join_element_wise(secs, ns, b"")
