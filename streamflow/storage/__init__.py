"""Where things are kept: the PostgreSQL schema and connections (embedded or a server), the Parquet
lake, the snapshots (`snapshots_of`: one class per backend), frames kept as Parquet, run history,
backup."""
