"""PostgreSQL's binary COPY format, built column-wise by Arrow: the rows of an online table
(entity_key, feature_name, value, event_ts, created_ts), each entity's rows one after the other
so a table written by COPY keeps an entity's features in one heap page, and the framing (header,
rows, trailer) around any such stream."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from psycopg import sql

from streamflow.feast_ext import encode
from streamflow.feast_ext.engine import EncodedBatch, EncodedChunks

ONLINE_COLUMNS = sql.SQL("entity_key, feature_name, value, event_ts, created_ts")
PG_EPOCH_US = 946_684_800_000_000  # 2000-01-01 UTC, the origin of PostgreSQL's binary timestamps
SIGNATURE = b"PGCOPY\n\xff\r\n\x00" + b"\x00" * 8
TRAILER = b"\xff\xff"
NULL = b"\xff\xff\xff\xff"


def field(values: pa.BinaryArray) -> pa.BinaryArray:
    """A binary COPY field: big-endian int32 length, then the bytes."""
    return pc.binary_join_element_wise(encode.be32(pc.binary_length(values)), values, b"")


def timestamps(micros: np.ndarray | None) -> pa.BinaryArray | bytes:
    if micros is None:
        return NULL
    return pc.binary_join_element_wise(b"\x00\x00\x00\x08", encode.be64(micros - PG_EPOCH_US), b"")


def joined(rows: pa.BinaryArray) -> memoryview:
    """The elements of a binary array, one after the other, without a copy."""
    offsets = np.frombuffer(rows.buffers()[1], dtype=np.int32, count=len(rows) + 1, offset=rows.offset * 4)
    return memoryview(rows.buffers()[2])[offsets[0] : offsets[-1]]


# entities per COPY chunk: bounds the chunk (~2 MB per feature) as the whole batch would not
COPY_ENTITIES = 20_000


def entity_rows(batch: EncodedBatch) -> Iterator[memoryview]:
    """PostgreSQL binary COPY rows (entity_key, feature_name, value, event_ts, created_ts), one
    per feature value, built column-wise by Arrow, each entity's rows one after the other. So a
    table written by COPY holds an entity's features in one heap page, and a lookup of 100 random
    users reads about 100 pages per view instead of 100 per feature."""
    head = pc.binary_join_element_wise(b"\x00\x05", field(batch.keys), b"")
    tail = pc.binary_join_element_wise(timestamps(batch.event_us), timestamps(batch.created_us), b"")
    features = []  # (the feature_name field, the value fields) per feature
    for name, values in batch.values.items():
        label = name.encode()
        features.append((len(label).to_bytes(4, "big") + label, field(values)))
    for start in range(0, len(batch), COPY_ENTITIES):
        h, t = head.slice(start, COPY_ENTITIES), tail.slice(start, COPY_ENTITIES)
        parts = [part for label, values in features for part in (h, label, values.slice(start, COPY_ENTITIES), t)]
        rows = pc.binary_join_element_wise(*parts, b"")  # one element per entity: all of its rows
        yield joined(rows)


def key_rows(batch: EncodedBatch) -> Iterator[memoryview]:
    """PostgreSQL binary COPY rows (entity_key, event_ts), one per entity of the batch."""
    yield joined(pc.binary_join_element_wise(b"\x00\x02", field(batch.keys), timestamps(batch.event_us), b""))


def copy_batches(
    cur,
    statement: sql.Composed,
    batches: EncodedChunks,
    rows: Callable[[EncodedBatch], Iterator[memoryview]] = entity_rows,
) -> None:
    """One binary COPY of `rows(batch)` for every batch, framed by the format's header and trailer."""
    with cur.copy(statement) as cp:
        cp.write(SIGNATURE)
        for batch in batches:
            for chunk in rows(batch):
                cp.write(chunk)
        cp.write(TRAILER)
