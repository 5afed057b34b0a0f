"""The online read path's byte builders write what protobuf writes, and its `to_dict` converts
every kind of `Value` as Feast's does."""

from __future__ import annotations

import datetime as dt
import uuid

from feast.online_response import OnlineResponse
from feast.protos.feast.serving.ServingService_pb2 import FieldStatus, GetOnlineFeaturesResponse
from feast.protos.feast.types.Value_pb2 import Int64List, StringList, Value
from feast.value_type import ValueType
from google.protobuf.timestamp_pb2 import Timestamp
from hypothesis import given
from hypothesis import strategies as st

from streamflow.feast_ext import online_read


@given(st.integers(min_value=0, max_value=2**63 - 1))
def test_varint_is_protobufs(n):
    assert online_read.varint(n) == Value(int64_val=n).SerializeToString()[1:]


@given(st.integers(min_value=-62135596800, max_value=253402300799), st.integers(min_value=0, max_value=999_999_999))
def test_timestamp_bytes_are_protobufs(seconds, nanos):
    assert online_read.timestamp_bytes(seconds, nanos) == Timestamp(seconds=seconds, nanos=nanos).SerializeToString()


@given(st.lists(st.one_of(st.none(), st.binary(max_size=300)), max_size=40), st.binary(max_size=20))
def test_feature_vector_bytes_parse_to_the_stock_vector(stored, ts):
    """`read_features`' assembly: framed values, packed statuses, framed timestamps."""
    values = [Value() if v is None else Value(string_val=v.hex()) for v in stored]
    framed = [
        online_read.MISSING if v is None else online_read.framed(x.SerializeToString())
        for v, x in zip(stored, values, strict=True)
    ]
    statuses = bytes([FieldStatus.NOT_FOUND if f is online_read.MISSING else FieldStatus.PRESENT for f in framed])
    stamp = Timestamp(seconds=len(ts))
    blob = (
        b"".join(framed)
        + online_read.field(b"\x12", statuses)
        + online_read.framed_timestamp(stamp.SerializeToString()) * len(stored)
    )
    got = GetOnlineFeaturesResponse.FeatureVector()
    got.MergeFromString(blob)
    want = GetOnlineFeaturesResponse.FeatureVector(
        values=values, statuses=list(statuses), event_timestamps=[stamp] * len(stored)
    )
    assert got == want
    # a stored empty Value is PRESENT: told from MISSING by identity, not by bytes
    assert online_read.framed(b"") == online_read.MISSING and online_read.framed(b"") is not online_read.MISSING


def test_to_dict_converts_every_kind_as_feast_does():
    when = int(dt.datetime(2024, 2, 29, tzinfo=dt.UTC).timestamp())
    u = str(uuid.uuid4())
    columns = {
        "d": [Value(double_val=1.5), Value(), Value(double_val=float("inf"))],
        "f": [Value(float_val=0.1), Value(float_val=2.0), Value()],
        "i": [Value(int64_val=2**40), Value(int32_val=-3), Value()],
        "b": [Value(bool_val=False), Value(bool_val=True), Value()],
        "s": [Value(string_val="é"), Value(string_val=""), Value()],
        "t": [Value(unix_timestamp_val=when), Value(), Value(unix_timestamp_val=0)],
        "l": [Value(int64_list_val=Int64List(val=[1, 2])), Value(), Value(string_list_val=StringList(val=["a"]))],
        "u": [Value(string_val=u), Value(), Value(string_val=u)],
        "j": [Value(json_val='{"a": 1}'), Value(), Value()],
        # columns of one kind throughout, with no empty value (read in one pass)
        "dd": [Value(double_val=-0.0), Value(double_val=2.5), Value(double_val=float("nan"))],
        "ii": [Value(int64_val=7), Value(int64_val=-(2**62)), Value(int64_val=0)],
        "bb": [Value(bool_val=True), Value(bool_val=False), Value(bool_val=True)],
        "ss": [Value(string_val=""), Value(string_val="x"), Value(string_val="é")],
        "tt": [Value(unix_timestamp_val=when)] * 3,
        "uu": [Value(string_val=u)] * 3,
    }
    proto = GetOnlineFeaturesResponse()
    proto.metadata.feature_names.val.extend(columns)
    for values in columns.values():
        proto.results.add(values=values, statuses=[1, 3, 1], event_timestamps=[Timestamp(seconds=when)] * 3)
    types = {"u": ValueType.UUID, "uu": ValueType.UUID}
    stock = OnlineResponse(proto, feature_types=types)
    ours = online_read.Response.of(OnlineResponse(proto, feature_types=types))
    a, b = ours.to_dict(include_event_timestamps=True), stock.to_dict(include_event_timestamps=True)
    nan = a["dd"][2]
    assert nan != nan and b["dd"][2] != b["dd"][2]  # NaN: compared as the same position below
    a["dd"][2] = b["dd"][2] = None
    assert a == b
    assert {k: [type(v) for v in a[k]] for k in a} == {k: [type(v) for v in b[k]] for k in b}
    assert isinstance(a["u"][0], uuid.UUID) and isinstance(a["t"][0], dt.datetime)
