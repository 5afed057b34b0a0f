"""Redis online store taking materialization batches column-wise.

The stock store (`feast.infra.online_stores.redis.RedisOnlineStore`) receives one `ValueProto`
per value and builds each hash in Python. With `engine.StreamflowComputeEngine` this subclass
receives the batch already encoded (entity keys, value bytes, timestamps) and writes the same
hashes, with the same keys, field names and stale-write rule: a row is skipped when the stored
`_ts:<view>` is at or after its event time. Reads, deletes and everything else are stock.

Writes go through two small Lua scripts (an HGET and an HSET per key, as the stock store
sends), one call per thousand keys; on a Redis Cluster, whose scripts cannot span hash slots, one
pipelined command per key.

Named in feature_store.redis.yaml as
`type: streamflow.feast_ext.redis_online.StreamflowRedisOnlineStore`.
"""

from __future__ import annotations

import functools
from datetime import UTC, datetime
from typing import Literal

import numpy as np
import pyarrow.compute as pc
from feast import FeatureView
from feast.infra.online_stores.helpers import _mmh3
from feast.infra.online_stores.redis import (
    RedisClient,
    RedisOnlineStore,
    RedisOnlineStoreConfig,
    _versioned_fv_name,
)
from feast.repo_config import RepoConfig
from google.protobuf.timestamp_pb2 import Timestamp
from redis.cluster import RedisCluster

from streamflow.feast_ext import encode, online_read
from streamflow.feast_ext.engine import EncodedChunks

TYPE = "streamflow.feast_ext.redis_online.StreamflowRedisOnlineStore"
PIPELINE_KEYS = 10_000  # keys per pipeline round trip


class StreamflowRedisOnlineStoreConfig(RedisOnlineStoreConfig):
    type: Literal[TYPE] = TYPE  # type: ignore[assignment]


@functools.lru_cache(maxsize=4096)
def _field(view: str, feature: str) -> bytes:
    """A feature's field name in its user's hash, as the stock store names it (cached: a lookup
    of one user hashed 20 names a request)."""
    return _mmh3(f"{view}:{feature}")


def _stored_micros(raw: bytes | None) -> int:
    if not raw:
        return 0
    ts = Timestamp()
    ts.ParseFromString(raw)
    return ts.seconds * 1_000_000 + ts.nanos // 1000


# One command per SCRIPT_KEYS keys instead of one per key: packing, sending and parsing a
# single-key command per user and view (an HGET for the stale-write check and an HSET) was most of
# a materialization's time in redis-py. The scripts do exactly those calls, server-side.
_READ_TS = """
local out = {}
for i, key in ipairs(KEYS) do out[i] = redis.call('HGET', key, ARGV[1]) end
return out
"""
_WRITE_HASHES = """
local n, ttl = tonumber(ARGV[1]), tonumber(ARGV[2])
local pairs = {}
for i, key in ipairs(KEYS) do
  local base = 2 + n * i
  for j = 1, n do
    pairs[2 * j - 1] = ARGV[2 + j]
    pairs[2 * j] = ARGV[base + j]
  end
  redis.call('HSET', key, unpack(pairs, 1, 2 * n))
  if ttl > 0 then redis.call('EXPIRE', key, ttl) end
end
return #KEYS
"""
_READ_HASHES = """
local out = {}
for i, key in ipairs(KEYS) do out[i] = redis.call('HMGET', key, unpack(ARGV)) end
return out
"""
SCRIPT_KEYS = 1_000  # keys per script call: each runs in a few milliseconds, so reads are not held up


class StreamflowRedisOnlineStore(online_read.BytesReads, RedisOnlineStore):
    def online_write_arrow(self, config: RepoConfig, table: FeatureView, batches: EncodedChunks) -> None:
        store_config = config.online_store
        client = self._get_client(store_config)
        # a script's keys must share a hash slot: on a cluster, one pipelined command per key
        scripted = not isinstance(client, RedisCluster)
        view = _versioned_fv_name(table, config)
        ts_key = f"_ts:{view}".encode()
        project = config.project.encode()
        ttl = store_config.key_ttl_seconds or 0
        for batch in batches:
            keys = pc.binary_join_element_wise(batch.keys, project, b"").to_pylist()
            fields = [ts_key] + [_field(view, name) for name in batch.values]
            columns = [encode.encode_timestamps(batch.event_us).to_pylist()] + [
                v.to_pylist() for v in batch.values.values()
            ]
            event = batch.event_us
            step = SCRIPT_KEYS * 10 if scripted else PIPELINE_KEYS
            for start in range(0, len(keys), step):
                stop = min(start + step, len(keys))
                chunk = keys[start:stop]
                write = np.ones(stop - start, dtype=bool)
                if not store_config.skip_dedup:
                    stored = np.fromiter(
                        (_stored_micros(r) for r in _read_ts(client, chunk, ts_key, scripted)), np.int64, len(chunk)
                    )
                    # skip a row older than the stored one (stock Feast also skips one at the same
                    # instant; here it is written, as on PostgreSQL, so a re-ingested month's
                    # corrected values reach the online store)
                    write = ~((stored != 0) & (event[start:stop] < stored))
                    # a user twice in this chunk: only its latest row (stock: first latest wins)
                    write &= _latest_in_chunk(chunk, event[start:stop])
                rows = np.flatnonzero(write) + start
                if scripted:
                    _write_scripted(client, keys, fields, columns, rows, ttl)
                else:
                    with client.pipeline(transaction=False) as pipe:
                        for i in rows:
                            pipe.hset(keys[i], mapping=dict(zip(fields, (c[i] for c in columns), strict=True)))
                            if ttl:
                                pipe.expire(name=keys[i], time=ttl)
                        pipe.execute()

    def _reads_bytes(self, config: RepoConfig) -> bool:
        return config.online_store.client == RedisClient.redis  # glide batches its own reads

    def _fetch(self, config: RepoConfig, reads: list[online_read.ViewRead]) -> list[online_read.Found]:
        """One HMGET per user for all its views' fields (the stock read sends one per user and
        view); `online_read` writes the response from the replies' bytes."""
        project = config.project.encode()
        keys = online_read.unique_keys(reads)
        fields, spans = [], []
        for read in reads:
            view = _versioned_fv_name(read.table, config)
            spans.append((len(fields), len(read.features)))
            fields += [_field(view, name) for name in read.features] + [f"_ts:{view}"]
        client = self._get_client(config.online_store)
        names = [key + project for key in keys]
        if len(names) == 1:
            replies = [client.hmget(names[0], fields)]
        elif isinstance(client, RedisCluster):  # a script's keys must share a hash slot
            with client.pipeline(transaction=False) as pipe:
                for name in names:
                    pipe.hmget(name, fields)
                replies = pipe.execute()
        else:  # one command, not one per user: redis-py spent ~20 us packing and parsing each
            replies = client.register_script(_READ_HASHES)(keys=names, args=fields)
        # like the stock read, every requested feature of every key is PRESENT, empty when absent
        framed = [list(map(online_read.framed, reply)) for reply in replies]
        return [
            {
                key: (_read_timestamp(reply[start + n]), values[start : start + n])
                for key, reply, values in zip(keys, replies, framed, strict=True)
            }
            for start, n in spans
        ]


@functools.lru_cache(maxsize=4096)
def _read_timestamp(raw: bytes | None) -> bytes:
    """The serialized Timestamp the stock read reports for a stored `_ts:<view>` (through a float
    of seconds and a datetime, as `RedisOnlineStore._get_features_for_entity` does)."""
    stored = Timestamp()
    if raw:
        stored.ParseFromString(raw)
    seconds = stored.seconds + stored.nanos / 1_000_000_000.0
    out = Timestamp()
    out.FromDatetime(datetime.fromtimestamp(seconds, tz=UTC))
    return out.SerializeToString()


def _read_ts(client, keys: list[bytes], ts_key: bytes, scripted: bool) -> list[bytes | None]:
    with client.pipeline(transaction=False) as pipe:
        if scripted:
            script = client.register_script(_READ_TS)
            for s in range(0, len(keys), SCRIPT_KEYS):
                script(keys=keys[s : s + SCRIPT_KEYS], args=[ts_key], client=pipe)
            return [v for part in pipe.execute() for v in part]
        for key in keys:
            pipe.hget(key, ts_key)
        return pipe.execute()


def _write_scripted(client, keys, fields, columns, rows: np.ndarray, ttl: int) -> None:
    script = client.register_script(_WRITE_HASHES)
    with client.pipeline(transaction=False) as pipe:
        for s in range(0, len(rows), SCRIPT_KEYS):
            part = rows[s : s + SCRIPT_KEYS].tolist()
            values = [c[i] for i in part for c in columns]
            script(keys=[keys[i] for i in part], args=[len(fields), ttl, *fields, *values], client=pipe)
        pipe.execute()


def _latest_in_chunk(keys: list[bytes], event: np.ndarray) -> np.ndarray:
    """True for each key's first row holding its latest event time in the chunk."""
    if len(set(keys)) == len(keys):
        return np.ones(len(keys), dtype=bool)
    best: dict[bytes, int] = {}
    for i, (k, e) in enumerate(zip(keys, event, strict=True)):
        if k not in best or e > event[best[k]]:
            best[k] = i
    keep = np.zeros(len(keys), dtype=bool)
    keep[list(best.values())] = True
    return keep
