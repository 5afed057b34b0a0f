"""PostgreSQL's binary COPY format, built column-wise by Arrow: the rows of a compact online
table (entity_key, layout, feature_values, event_ts; `pg_compact`), one per entity
holding every value of its view, and the framing (header, rows, trailer) around any such stream."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from psycopg import sql

from streamflow.feast_ext import encode
from streamflow.feast_ext.engine import EncodedBatch, EncodedChunks

ONLINE_COLUMNS = sql.SQL("entity_key, layout, feature_values, event_ts")
PG_EPOCH_US = 946_684_800_000_000  # 2000-01-01 UTC, the origin of PostgreSQL's binary timestamps
SIGNATURE = b"PGCOPY\n\xff\r\n\x00" + b"\x00" * 8
TRAILER = b"\xff\xff"


def field(values: pa.BinaryArray) -> pa.BinaryArray:
    """A binary COPY field: big-endian int32 length, then the bytes."""
    return pc.binary_join_element_wise(encode.be32(pc.binary_length(values)), values, b"")


def timestamps(micros: np.ndarray) -> pa.BinaryArray:
    """Binary COPY fields of timestamptz values given in microseconds since the Unix epoch."""
    return pc.binary_join_element_wise(b"\x00\x00\x00\x08", encode.be64(micros - PG_EPOCH_US), b"")


def joined(rows: pa.BinaryArray) -> memoryview:
    """The elements of a binary array, one after the other, without a copy."""
    offsets = np.frombuffer(rows.buffers()[1], dtype=np.int32, count=len(rows) + 1, offset=rows.offset * 4)
    return memoryview(rows.buffers()[2])[offsets[0] : offsets[-1]]


# entities per COPY chunk: bounds the chunk (~2 MB per feature) as the whole batch would not
COPY_ENTITIES = 20_000
BYTEA_OID = 17


def array_header(n: int) -> bytes:
    """The binary header of a one-dimensional bytea[] of n elements with no NULL (lower bound 1)."""
    if n == 0:
        return (0).to_bytes(4, "big") * 2 + BYTEA_OID.to_bytes(4, "big")
    return b"".join(v.to_bytes(4, "big") for v in (1, 0, BYTEA_OID, n, 1))


def entity_rows(batch: EncodedBatch, layout: int) -> Iterator[memoryview]:
    """PostgreSQL binary COPY rows (entity_key, layout, feature_values, event_ts), one
    per entity: its view's `Value` bytes as one bytea[] in the batch's feature order (the table's
    layout number `layout`), built column-wise by Arrow. A lookup of 100 users reads 100 index
    entries and rows per view, where a row per feature read one per value."""
    names = list(batch.values)
    header = array_header(len(names))
    fields = [field(batch.values[name]) for name in names]
    size = np.full(len(batch), len(header), dtype=np.int64)
    for f in fields:
        size += np.asarray(pc.binary_length(f), dtype=np.int64)
    head = pc.binary_join_element_wise(
        b"\x00\x04", field(batch.keys), b"\x00\x00\x00\x02" + layout.to_bytes(2, "big"), encode.be32(size), b""
    )
    tail = timestamps(batch.event_us)
    for start in range(0, len(batch), COPY_ENTITIES):
        parts = [head.slice(start, COPY_ENTITIES), header, *(f.slice(start, COPY_ENTITIES) for f in fields)]
        rows = pc.binary_join_element_wise(*parts, tail.slice(start, COPY_ENTITIES), b"")
        yield joined(rows)


def copy_batches(
    cur,
    statement: sql.Composed,
    batches: EncodedChunks,
    rows: Callable[[EncodedBatch], Iterator[memoryview]],
) -> None:
    """One binary COPY of `rows(batch)` for every batch, framed by the format's header and trailer."""
    with cur.copy(statement) as cp:
        cp.write(SIGNATURE)
        for batch in batches:
            for chunk in rows(batch):
                cp.write(chunk)
        cp.write(TRAILER)
