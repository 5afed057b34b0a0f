"""The column-wise encoders write exactly the bytes Feast writes, value by value."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pyarrow as pa
import pytest
from feast.infra.key_encoding_utils import serialize_entity_key
from feast.protos.feast.types.EntityKey_pb2 import EntityKey
from feast.protos.feast.types.Value_pb2 import Value
from feast.type_map import python_values_to_proto_values
from feast.value_type import ValueType
from google.protobuf.timestamp_pb2 import Timestamp
from hypothesis import given, settings
from hypothesis import strategies as st

from streamflow.feast_ext import encode


def feast_bytes(col: pa.Array, value_type: ValueType) -> list[bytes]:
    """What Feast's materialization stores for each value (feast.utils._columns_to_proto_values)."""
    return [
        v.SerializeToString() for v in python_values_to_proto_values(col.to_numpy(zero_copy_only=False), value_type)
    ]


INT64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)


@pytest.mark.parametrize(
    ("col", "value_type"),
    [
        (pa.array([1.5, None, float("nan"), -0.0, 1e300, 0.0, float("inf")]), ValueType.DOUBLE),
        (pa.array([1, None, -1, 0, 2**40, -(2**53), 2**53, 127, 128, 300]), ValueType.INT64),
        (pa.array([1, -1, 0, -(2**63), 2**63 - 1, 127, 128, 300]), ValueType.INT64),
        (pa.array([1, None, -5, 0, 70000], type=pa.int32()), ValueType.INT64),
        (pa.array([True, None, False]), ValueType.BOOL),
        (pa.array(["a", None, "", "é" * 100, "x" * 200, "7590-VHVEG"]), ValueType.STRING),
        (pa.array([None, None], type=pa.float64()), ValueType.DOUBLE),
    ],
)
def test_values_byte_for_byte(col, value_type):
    assert encode.encode_values(col, value_type).to_pylist() == feast_bytes(col, value_type)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.one_of(st.none(), INT64), min_size=1, max_size=40))
def test_int64_any_value(values):
    col = pa.array(values, type=pa.int64())
    got = encode.encode_values(col, ValueType.INT64)
    if got is None:  # only where Feast itself rounds through float64 (nulls beside |v| > 2**53)
        assert col.null_count and max(abs(v) for v in values if v is not None) > 2**53
    else:
        assert got.to_pylist() == feast_bytes(col, ValueType.INT64)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True)), min_size=1, max_size=40))
def test_double_any_value(values):
    col = pa.array(values, type=pa.float64())
    assert encode.encode_values(col, ValueType.DOUBLE).to_pylist() == feast_bytes(col, ValueType.DOUBLE)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.one_of(st.none(), st.text(max_size=300)), min_size=1, max_size=30))
def test_string_any_value(values):
    col = pa.array(values, type=pa.string())
    assert encode.encode_values(col, ValueType.STRING).to_pylist() == feast_bytes(col, ValueType.STRING)


def test_unknown_type_is_left_to_feast():
    assert encode.encode_values(pa.array([[1, 2]]), ValueType.INT64_LIST) is None
    assert encode.encode_values(pa.array(["1"]), ValueType.INT64) is None


@settings(max_examples=40, deadline=None)
@given(st.lists(st.text(min_size=0, max_size=70), min_size=1, max_size=20))
def test_entity_keys_byte_for_byte(ids):
    expected = [
        serialize_entity_key(EntityKey(join_keys=["user_id"], entity_values=[Value(string_val=u)]), 3) for u in ids
    ]
    assert encode.encode_entity_keys(pa.array(ids), "user_id", 3).to_pylist() == expected


def test_entity_keys_with_a_null_are_left_to_feast():
    assert encode.encode_entity_keys(pa.array(["a", None]), "user_id", 3) is None


def test_timestamps_byte_for_byte():
    instants = [
        dt.datetime(2024, 1, 31),
        dt.datetime(1970, 1, 1),
        dt.datetime(1969, 12, 31, 23, 59, 59, 500000),
        dt.datetime(2024, 1, 31, 1, 2, 3, 456789),
        dt.datetime(1900, 3, 1),
    ]
    expected = []
    for d in instants:
        ts = Timestamp()
        ts.FromDatetime(d.replace(tzinfo=dt.UTC))
        expected.append(ts.SerializeToString())
    micros = encode.epoch_micros(pa.array(instants, type=pa.timestamp("us", tz="UTC")))
    assert encode.encode_timestamps(micros).to_pylist() == expected
    naive = encode.epoch_micros(pa.array(instants, type=pa.timestamp("ns")))
    assert np.array_equal(naive, micros)


def _copy_tuples(stream: bytes) -> list[tuple]:
    """PostgreSQL binary COPY tuples (the signature and trailer excluded) as tuples of fields."""
    out, pos = [], 0
    while pos < len(stream):
        count, pos = int.from_bytes(stream[pos : pos + 2], "big"), pos + 2
        row = []
        for _ in range(count):
            n, pos = int.from_bytes(stream[pos : pos + 4], "big", signed=True), pos + 4
            row.append(None if n == -1 else stream[pos : pos + n])
            pos += max(n, 0)
        out.append(tuple(row))
    return out


def _bytea_array(field: bytes) -> list[bytes]:
    """The elements of a binary one-dimensional bytea[] with no NULL."""
    ndim, has_null, oid = (int.from_bytes(field[i : i + 4], "big") for i in (0, 4, 8))
    assert (has_null, oid) == (0, 17)
    if ndim == 0:
        return []
    n, pos, out = int.from_bytes(field[12:16], "big"), 20, []
    for _ in range(n):
        size = int.from_bytes(field[pos : pos + 4], "big")
        out.append(field[pos + 4 : pos + 4 + size])
        pos += 4 + size
    assert pos == len(field)
    return out


def test_copy_rows_hold_each_entity_in_one_row(monkeypatch):
    """The compact online COPY stream holds one row per entity, across chunk boundaries too: its
    key, its layout number, its values as a bytea[] in the batch's feature order, its instants."""
    from streamflow.feast_ext import pg_copy
    from streamflow.feast_ext.engine import EncodedBatch

    monkeypatch.setattr(pg_copy, "COPY_ENTITIES", 2)
    keys = [b"k0", b"k1", b"k2", b"k3", b"k4"]
    values = {"a": [b"a0", b"a1", b"", b"a3", b"a4"], "bb": [b"b0", b"b1", b"b2", b"b3" * 100, b"b4"]}
    micros = np.array([1_700_000_000_000_000 + i for i in range(5)], dtype=np.int64)
    batch = EncodedBatch(pa.array(keys, pa.binary()), {k: pa.array(v, pa.binary()) for k, v in values.items()}, micros)
    stream = b"".join(bytes(chunk) for chunk in pg_copy.entity_rows(batch, 3))
    pg = [(m - pg_copy.PG_EPOCH_US).to_bytes(8, "big", signed=True) for m in micros.tolist()]
    got = [(k, lay, _bytea_array(arr), ev) for k, lay, arr, ev in _copy_tuples(stream)]
    expected = [(k, b"\x00\x03", [values["a"][i], values["bb"][i]], pg[i]) for i, k in enumerate(keys)]
    assert got == expected
