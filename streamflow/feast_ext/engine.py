"""Feast's local compute engine, handing online stores whole Arrow batches.

Stock materialization (`LocalOutputNode`) converts every value of the pulled Arrow table into a
`ValueProto` object before the online store sees it: most of a materialization's time, profiled.
This engine runs the same DAG (read, filter, dedup, validation: Feast's nodes) and only replaces
the last step: when the online store offers `online_write_arrow(config, view, table)` (both of
StreamFlow's stores do) it receives the Arrow table, encoded column-wise by `encode.py`; when the
store lacks it, or a column type is one the encoders do not know, the stock conversion runs.

Named in feature_store.yaml as `batch_engine: type: streamflow.feast_ext.engine.StreamflowComputeEngine`,
so `feast materialize` and a plain `feast.FeatureStore(repo_path=...)` client use it too.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from feast import FeatureView
from feast.infra.common.materialization_job import MaterializationJobStatus, MaterializationTask
from feast.infra.compute_engines.dag.context import ExecutionContext
from feast.infra.compute_engines.local.arrow_table_value import ArrowTableValue
from feast.infra.compute_engines.local.compute import LocalComputeEngine, LocalComputeEngineConfig
from feast.infra.compute_engines.local.feature_builder import LocalFeatureBuilder
from feast.infra.compute_engines.local.job import LocalMaterializationJob
from feast.infra.compute_engines.local.nodes import LocalOutputNode
from feast.infra.registry.base_registry import BaseRegistry
from feast.repo_config import RepoConfig

from streamflow.feast_ext import encode

TYPE = "streamflow.feast_ext.engine.StreamflowComputeEngine"
CHUNK_ROWS = 200_000  # rows encoded at once: bounds the encoded copy of a batch (~80 MB at 9 features)


class StreamflowComputeEngineConfig(LocalComputeEngineConfig):
    type: Literal[TYPE] = TYPE  # type: ignore[assignment]


@dataclass
class EncodedBatch:
    """One Arrow batch as the online stores store it: serialized entity keys, `ValueProto` bytes
    per feature, and event instants in microseconds since the epoch (UTC); no store keeps the
    created instant (no online read returns it)."""

    keys: pa.BinaryArray
    values: dict[str, pa.BinaryArray]
    event_us: np.ndarray

    def __len__(self) -> int:
        return len(self.keys)


def encode_batch(config: RepoConfig, view: FeatureView, table: pa.Table | pa.RecordBatch) -> EncodedBatch | None:
    """The batch encoded column-wise, or None when any column needs Feast's own conversion."""
    join_keys = [e.name for e in view.entity_columns]
    if len(join_keys) != 1 or view.batch_source is None:
        return None
    keys = encode.encode_entity_keys(table.column(join_keys[0]), join_keys[0], config.entity_key_serialization_version)
    if keys is None:
        return None
    values = {}
    for field in view.features:
        if field.name not in table.column_names:
            return None
        encoded = encode.encode_values(table.column(field.name), field.dtype.to_value_type())
        if encoded is None:
            return None
        values[field.name] = encoded
    source = view.batch_source
    if source.timestamp_field not in table.column_names:
        return None
    try:
        event = encode.epoch_micros(table.column(source.timestamp_field))
    except TypeError:
        return None
    return EncodedBatch(keys, values, event)


class EncodedChunks:
    """A view's pulled table as encoded batches of CHUNK_ROWS rows, encoded as they are iterated
    (so memory holds one encoded chunk); iterable again if a store must retry its write."""

    def __init__(self, config: RepoConfig, view: FeatureView, table: pa.Table):
        self.config, self.view, self.table = config, view, table
        keys = [table.column(e.name) for e in view.entity_columns]
        # one row per user (what pull_latest_features gives): stores may skip their dedup step
        self.unique = len(keys) == 1 and pc.count_distinct(keys[0]).as_py() == table.num_rows

    def __len__(self) -> int:
        return self.table.num_rows

    def __iter__(self) -> Iterator[EncodedBatch]:
        for start in range(0, self.table.num_rows, CHUNK_ROWS):
            batch = encode_batch(self.config, self.view, self.table.slice(start, CHUNK_ROWS))
            if batch is None:  # cannot happen once the first chunk encoded; never write half a view
                raise TypeError(f"{self.view.name}: a chunk could not be encoded column-wise")
            yield batch


class ArrowOutputNode(LocalOutputNode):
    def execute(self, context: ExecutionContext) -> ArrowTableValue:
        write = getattr(context.online_store, "online_write_arrow", None)
        accepts = getattr(context.online_store, "accepts_arrow", None)
        if (
            not self.feature_view.online
            or write is None
            or (accepts and not accepts(context.repo_config, self.feature_view))
        ):
            return super().execute(context)
        table = self.get_single_table(context).data
        output = ArrowTableValue(data=table)
        context.node_outputs[self.name] = output
        if table.num_rows == 0:
            return output
        config, view = context.repo_config, self.feature_view
        # types decide whether the encoders apply, so one row answers for all chunks; two kinds of
        # values are left to Feast's conversion for the whole table: a null join key, and an
        # integer column Feast would round (nulls beside a value beyond 2**53)
        probe = encode_batch(config, view, table.slice(0, 1))  # one row: the chunks are encoded as written
        if (
            probe is None
            or any(table.column(e.name).null_count for e in view.entity_columns)
            or any(encode.feast_rounds(table.column(f.name)) for f in view.features)
        ):
            return super().execute(context)
        write(config, view, EncodedChunks(config, view, table))
        if self.feature_view.offline:
            context.offline_store.offline_write_batch(
                config=context.repo_config, feature_view=self.feature_view, table=table, progress=lambda x: None
            )
        return output


class _Builder(LocalFeatureBuilder):
    def build_output_nodes(self, view, input_node):
        node = ArrowOutputNode("output", self.dag_root.view, inputs=[input_node])
        self.nodes.append(node)
        return node


class StreamflowComputeEngine(LocalComputeEngine):
    def _materialize_one(self, registry: BaseRegistry, task: MaterializationTask, **kwargs) -> LocalMaterializationJob:
        job_id = f"{task.feature_view.name}-{task.start_time}-{task.end_time}"
        context = self.get_execution_context(registry, task)
        try:
            _Builder(registry, task, backend=self._get_backend(context)).build().execute(context)
            return LocalMaterializationJob(job_id=job_id, status=MaterializationJobStatus.SUCCEEDED)
        except Exception as e:  # noqa: BLE001 -- reported through the job, as the stock engine does
            return LocalMaterializationJob(job_id=job_id, status=MaterializationJobStatus.ERROR, error=e)
