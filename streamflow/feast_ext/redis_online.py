"""Redis online store taking materialization batches column-wise.

The stock store (`feast.infra.online_stores.redis.RedisOnlineStore`) receives one `ValueProto`
per value and builds each hash in Python. With `engine.StreamflowComputeEngine` this subclass
receives the batch already encoded (entity keys, value bytes, timestamps) and writes the same
hashes, with the same keys, field names and stale-write rule: a row is skipped when the stored
`_ts:<view>` is at or after its event time. Reads, deletes and everything else are stock.

Named in feature_store.redis.yaml as
`type: streamflow.feast_ext.redis_online.StreamflowRedisOnlineStore`.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import pyarrow.compute as pc
from feast import FeatureView
from feast.infra.online_stores.helpers import _mmh3
from feast.infra.online_stores.redis import RedisOnlineStore, RedisOnlineStoreConfig, _versioned_fv_name
from feast.repo_config import RepoConfig
from google.protobuf.timestamp_pb2 import Timestamp

from streamflow.feast_ext import encode
from streamflow.feast_ext.engine import EncodedChunks

TYPE = "streamflow.feast_ext.redis_online.StreamflowRedisOnlineStore"
PIPELINE_KEYS = 10_000  # keys per pipeline round trip


class StreamflowRedisOnlineStoreConfig(RedisOnlineStoreConfig):
    type: Literal[TYPE] = TYPE  # type: ignore[assignment]


def _stored_micros(raw: bytes | None) -> int:
    if not raw:
        return 0
    ts = Timestamp()
    ts.ParseFromString(raw)
    return ts.seconds * 1_000_000 + ts.nanos // 1000


class StreamflowRedisOnlineStore(RedisOnlineStore):
    def online_write_arrow(self, config: RepoConfig, table: FeatureView, batches: EncodedChunks) -> None:
        store_config = config.online_store
        client = self._get_client(store_config)
        view = _versioned_fv_name(table, config)
        ts_key = f"_ts:{view}".encode()
        project = config.project.encode()
        for batch in batches:
            keys = pc.binary_join_element_wise(batch.keys, project, b"").to_pylist()
            fields = [ts_key] + [_mmh3(f"{view}:{name}") for name in batch.values]
            columns = [encode.encode_timestamps(batch.event_us).to_pylist()] + [
                v.to_pylist() for v in batch.values.values()
            ]
            event = batch.event_us
            for start in range(0, len(keys), PIPELINE_KEYS):
                stop = min(start + PIPELINE_KEYS, len(keys))
                write = np.ones(stop - start, dtype=bool)
                if not store_config.skip_dedup:
                    with client.pipeline(transaction=False) as pipe:
                        for key in keys[start:stop]:
                            pipe.hget(key, ts_key)
                        stored = np.fromiter((_stored_micros(r) for r in pipe.execute()), np.int64, stop - start)
                    write = ~((stored != 0) & (event[start:stop] <= stored))
                    # a user twice in this chunk: only its latest row (stock: first latest wins)
                    write &= _latest_in_chunk(keys[start:stop], event[start:stop])
                with client.pipeline(transaction=False) as pipe:
                    for i in np.flatnonzero(write) + start:
                        pipe.hset(keys[i], mapping=dict(zip(fields, (c[i] for c in columns), strict=True)))
                        if store_config.key_ttl_seconds:
                            pipe.expire(name=keys[i], time=store_config.key_ttl_seconds)
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
