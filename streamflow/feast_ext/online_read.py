"""Online reads that build Feast's response from the stored bytes.

Feast's read path parses every stored value into a `ValueProto`, files it in a dict per
entity, then copies it into the response one object at a time; profiled, filling the
response, iterating result rows, converting values for `to_dict`, serializing entity keys and
bucketing rows were each a large share of a request. The stored value *is* the serialized `Value`, so a
`FeatureVector` can be written as the bytes it serializes to (values, packed statuses, event
timestamps) and parsed once, in C, into the response. `tests/integration/test_fast_paths.py` compares every
response with the stock stores' on the same data.

Both stores take `BytesReads` before their stock class: it answers `_read_features_per_fv`,
the hook Feast's online store gives "to batch reads more efficiently", with the store's own
`_fetch` of its layout and `read_features`. For requests
the fast path does not cover (several join keys, a join key that is not a string, version
metadata, Redis's glide client) `plan` returns None and the stock path answers. One deliberate
difference: where an entity's stored rows of one view carry different event times (never the
case for rows materialized together), PostgreSQL's stock read reports whichever row the server
returned last, this one the latest.
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Sequence
from dataclasses import dataclass

from feast import utils
from feast.feature_view import FeatureView
from feast.online_response import TIMESTAMP_POSTFIX, OnlineResponse
from feast.protos.feast.serving.ServingService_pb2 import FieldStatus
from feast.repo_config import RepoConfig
from feast.type_map import feast_value_type_to_python_type
from feast.value_type import ValueType

from streamflow.feast_ext import encode

_PRESENT, _NOT_FOUND = FieldStatus.PRESENT, FieldStatus.NOT_FOUND
_VALUES, _STATUSES, _TIMESTAMPS = b"\x0a", b"\x12", b"\x1a"  # FeatureVector fields 1, 2, 3
_VARINTS = [bytes([n]) for n in range(128)]
_EMPTY_TS = _TIMESTAMPS + b"\x00"
_which = operator.methodcaller("WhichOneof", "val")  # the field a `Value` holds, None if empty
# a feature the store holds no value for: an empty `Value` entry, told from a stored empty Value
# (PRESENT) by identity
MISSING = bytes(bytearray(_VALUES + b"\x00"))


def varint(n: int) -> bytes:
    if n < 128:
        return _VARINTS[n]
    out = bytearray()
    while n >= 128:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def field(tag: bytes, payload: bytes) -> bytes:
    """One length-delimited protobuf field."""
    return tag + varint(len(payload)) + payload


def timestamp_bytes(seconds: int, nanos: int = 0) -> bytes:
    """`Timestamp(seconds=..., nanos=...).SerializeToString()`."""
    out = b""
    if seconds:
        out += b"\x08" + varint(seconds & 0xFFFFFFFFFFFFFFFF)
    if nanos:
        out += b"\x10" + varint(nanos)
    return out


@dataclass
class ViewRead:
    """One feature view of a request: its features and the serialized entity key of each row."""

    table: FeatureView
    features: list[str]
    row_keys: list[bytes]  # one per response row, repeated entities included


def unique_keys(reads: Sequence[ViewRead]) -> list[bytes]:
    """Every entity key the request reads, once, in first-seen order."""
    return list(dict.fromkeys(k for read in reads for k in read.row_keys))


# what a store's fetch returns per view: entity key -> (serialized Timestamp, the `framed` value of
# each requested feature in order, MISSING where it has none); an entity it has nothing for is absent
Found = dict[bytes, tuple[bytes, Sequence[bytes]]]


def plan(config: RepoConfig, grouped_refs: list, join_key_values: dict, entity_name_to_join_key_map: dict):
    """The request as ViewReads, or None when it needs the stock path."""
    version = config.entity_key_serialization_version
    reads = []
    serialized: dict[str, list[bytes]] = {}  # views of one entity share its keys: built once
    for table, requested in grouped_refs:
        values = utils._get_table_entity_values(table, entity_name_to_join_key_map, join_key_values)
        if len(values) != 1 or not requested:
            return None
        ((join_key, protos),) = values.items()
        keys = serialized.get(join_key)
        if keys is None:
            prefix = encode.entity_key_prefix(join_key, version)
            if prefix is None or not protos or set(map(_which, protos)) != {"string_val"}:
                return None
            keys = serialized[join_key] = [
                prefix + len(raw).to_bytes(4, "little") + raw for raw in (v.string_val.encode() for v in protos)
            ]
        reads.append(ViewRead(table, list(requested), keys))
    return reads


def read_features(reads: Sequence[ViewRead], found_per_view: list[Found], response, full_feature_names: bool) -> None:
    """Fill `response` as `utils._populate_response_from_feature_data` does, view by view.

    An entity the fetch has nothing for gets Feast's NOT_FOUND and an empty timestamp, and so
    does a feature its entry holds as MISSING; a store whose stock read says otherwise (Redis
    reports every requested feature PRESENT) returns an entry for every key.
    """
    for read, found in zip(reads, found_per_view, strict=True):
        name = read.table.projection.name_to_use()
        response.metadata.feature_names.val.extend([f"{name}__{f}" if full_feature_names else f for f in read.features])
        absent = (None, (MISSING,) * len(read.features))
        rows = [found.get(k, absent) for k in read.row_keys]
        ts = b"".join([framed_timestamp(r[0]) for r in rows])
        for column in zip(*[r[1] for r in rows], strict=True):
            statuses = bytes([_NOT_FOUND if v is MISSING else _PRESENT for v in column])
            response.results.add().MergeFromString(b"".join(column) + field(_STATUSES, statuses) + ts)


@functools.lru_cache(maxsize=1 << 16)
def framed(value: bytes | None) -> bytes:
    """A stored `Value` as the FeatureVector `values` entry a fetch hands to `read_features`
    (cached: most stored values repeat, flags, categories, small counts); None, a value the
    store does not hold, frames as an empty `Value`."""
    value = value or b""
    return _VALUES + varint(len(value)) + value


@functools.lru_cache(maxsize=4096)
def framed_timestamp(timestamp: bytes | None) -> bytes:
    return _EMPTY_TS if timestamp is None else field(_TIMESTAMPS, timestamp)


# `feast_value_type_to_python_type` returns these `Value` fields as they are, except a string
# typed as a UUID; calling it per value was a third of a 100-user read's `to_dict`
_AS_IS = frozenset({"double_val", "float_val", "int32_val", "int64_val", "bool_val", "bytes_val", "string_val"})
_UUIDS = frozenset({ValueType.UUID, ValueType.TIME_UUID})


class Response(OnlineResponse):
    """Feast's OnlineResponse with a `to_dict` (and so `to_df`, `to_arrow`) that converts the
    plain scalar values without a call per value; every other value takes Feast's conversion."""

    @classmethod
    def of(cls, response: OnlineResponse) -> Response:
        fast = cls.__new__(cls)
        fast.__dict__.update(response.__dict__)
        return fast

    def to_dict(self, include_event_timestamps: bool = False) -> dict:
        out: dict = {}
        for ref, vector in zip(self.proto.metadata.feature_names.val, self.proto.results, strict=True):
            ftype = self._feature_types.get(ref)
            if ftype in _UUIDS:
                out[ref] = [feast_value_type_to_python_type(v, ftype) for v in vector.values]
            else:
                values = vector.values
                kinds = list(map(_which, values))
                first = kinds[0] if kinds else None
                if first in _AS_IS and kinds.count(first) == len(kinds):  # one scalar field throughout: read in C
                    out[ref] = list(map(operator.attrgetter(first), values))
                else:
                    out[ref] = [
                        None
                        if kind is None
                        else getattr(v, kind)
                        if kind in _AS_IS
                        else feast_value_type_to_python_type(v, ftype)
                        for v, kind in zip(values, kinds, strict=True)
                    ]
            if include_event_timestamps:
                out[ref + TIMESTAMP_POSTFIX] = [ts.seconds for ts in vector.event_timestamps]
        return out


class BytesReads:
    """The read side both StreamFlow online stores share, placed before the stock store class:
    Feast's `_read_features_per_fv` hook answered through `plan`, the store's `_fetch` and
    `read_features`, and its responses returned as `Response`."""

    def _reads_bytes(self, config: RepoConfig) -> bool:
        """Whether this store's configuration reads through `_fetch` (the stock path otherwise)."""
        return True

    def _fetch(self, config: RepoConfig, reads: list[ViewRead]) -> list[Found]:
        raise NotImplementedError

    def get_online_features(self, *args, **kwargs) -> Response:
        return Response.of(super().get_online_features(*args, **kwargs))

    def _read_features_per_fv(
        self,
        config: RepoConfig,
        grouped_refs: list,
        join_key_values: dict,
        entity_name_to_join_key_map: dict,
        online_features_response,
        full_feature_names: bool,
        include_feature_view_version_metadata: bool,
    ) -> None:
        reads = None
        if not include_feature_view_version_metadata and self._reads_bytes(config):
            reads = plan(config, grouped_refs, join_key_values, entity_name_to_join_key_map)
        if reads is None:
            return super()._read_features_per_fv(
                config,
                grouped_refs,
                join_key_values,
                entity_name_to_join_key_map,
                online_features_response,
                full_feature_names,
                include_feature_view_version_metadata,
            )
        read_features(reads, self._fetch(config, reads), online_features_response, full_feature_names)
