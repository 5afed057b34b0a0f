"""A large month is split into buckets of users and validated and written bucket by bucket.
The same month split in 3 and held whole must give the same validations (every expectation,
count and verdict), the same stored rows and the same lake partitions, good month or bad."""

from __future__ import annotations

from dataclasses import replace

import pytest

from streamflow.core.catalog import TABLES
from streamflow.ingest import IngestError, buckets, check_month, ingest_month
from streamflow.ingest.buckets import MonthParts
from tests.support import BAD_BATCHES, fingerprint

K = 3


@pytest.fixture
def split_in(monkeypatch):
    """split_in(folder, k): make months of folder's size split into k buckets."""

    def make(folder, k: int) -> None:
        total = sum((folder / t.csv).stat().st_size for t in TABLES if (folder / t.csv).is_file())
        monkeypatch.setattr(buckets, "BUCKET_BYTES", max(1, -(-total // k)))
        monkeypatch.setattr(buckets, "READ_ROWS", 1000)  # several read chunks per file too
        assert buckets.bucket_count(folder) == k

    return make


def _comparable(validations):
    """Everything but where the examples come from (first rows of the file vs of each bucket):
    their number, and the examples themselves when all of them fit."""
    out = []
    for v in validations:
        details = []
        for d in v.details:
            d = dict(d)
            ex = d.pop("examples") or []
            fits = (d.get("unexpected_count") or 0) <= len(ex)
            d["examples"] = sorted(map(repr, ex)) if fits else len(ex)
            details.append(d)
        out.append((v.table, v.success, v.evaluated, v.successful, v.failed, v.row_count, details))
    return out


def test_buckets_hold_a_share_of_the_month_and_every_user_in_one(months, split_in):
    folder = months[0][0]
    split_in(folder, K)
    parts = MonthParts(folder)
    try:
        sizes = [len(parts.raws(b)["users"]) for b in range(K)]
        whole = parts.rows["users"]
        assert sum(sizes) == whole and max(sizes) < whole / K * 1.3, sizes
        for b in range(K):
            raws = parts.raws(b)
            ids = set(raws["users"]["user_id"])
            for t in TABLES[1:]:
                assert set(raws[t.name]["user_id"]) <= ids  # a user's rows share a bucket
    finally:
        parts.close()


@pytest.mark.parametrize("workers", [1, 2])
def test_a_good_month_validates_and_writes_the_same_split_or_whole(
    embedded_settings, months, split_in, tmp_path, workers
):
    """Held whole, or split in K buckets validated here (1) or by worker processes (2): the same
    verdicts, the same PostgreSQL rows and the same lake partitions."""
    from tests.support import reset_database

    folder = months[0][0]
    whole_parts, whole = check_month(folder, months[0][1])
    whole_parts.close()
    pg = replace(embedded_settings, ingest_workers=workers)
    lake_settings = replace(pg, offline_store="spark", lake=str(tmp_path / "lake"))
    reset_database(pg)
    ingest_month(folder, settings=pg)
    stored_whole = fingerprint(pg, timestamps=False)
    ingest_month(folder, settings=lake_settings)
    lake_whole = _lake_tables(lake_settings, months[0][1])

    split_in(folder, K)
    parts, split = check_month(folder, months[0][1], workers=workers)
    assert parts.k == K
    parts.close()
    assert _comparable(split) == _comparable(whole)
    assert all(v.success for v in split)
    reset_database(pg)
    r = ingest_month(folder, settings=pg)
    assert r.rows == {t.name: len(lake_whole[t.snapshot]) for t in TABLES}
    assert fingerprint(pg, timestamps=False) == stored_whole
    r = ingest_month(folder, settings=lake_settings)  # the same month again, now in buckets
    assert all(v["snapshot_upserted"] == 0 for v in r.changed.values())  # the same content, whole or split
    assert _lake_tables(lake_settings, months[0][1]) == lake_whole


def _lake_tables(settings, as_of):
    import pyarrow.parquet as pq

    from streamflow.storage.lake import PART_FILE, lake_of

    lk = lake_of(settings)
    out = {}
    for t in TABLES:
        table = pq.read_table(f"{lk.table_dir(t)}/as_of={as_of}/{PART_FILE}", filesystem=lk.fs)
        out[t.snapshot] = table.drop_columns(["ingested_at"]).sort_by("user_id").to_pylist()
    return out


@pytest.mark.parametrize("case", sorted(set(BAD_BATCHES) - {"empty_file", "non_utf8"}))
def test_a_bad_month_is_refused_alike_split_or_whole(months, month_copy, split_in, case):
    bad = month_copy(1)
    BAD_BATCHES[case](bad)
    parts, whole = check_month(bad, months[1][1])
    parts.close()
    split_in(bad, K)
    parts, split = check_month(bad, months[1][1])
    parts.close()
    assert not all(v.success for v in whole)
    assert _comparable(split) == _comparable(whole)


@pytest.mark.parametrize("case", ["duplicate_user_id", "user_missing_from_users", "unknown_boolean"])
def test_a_bad_month_is_refused_alike_by_worker_processes(months, month_copy, split_in, case):
    """Refusals found in worker processes: the serial verdicts, counts and examples (bucket order)."""
    bad = month_copy(1)
    BAD_BATCHES[case](bad)
    split_in(bad, K)
    parts, serial = check_month(bad, months[1][1])
    parts.close()
    parts, parallel = check_month(bad, months[1][1], workers=2)
    parts.close()
    assert not all(v.success for v in parallel)
    assert [(v.table, v.success, v.details) for v in parallel] == [(v.table, v.success, v.details) for v in serial]


@pytest.mark.parametrize("case", ["empty_file", "non_utf8"])
def test_an_unreadable_file_is_refused_alike_split_or_whole(months, month_copy, split_in, case):
    bad = month_copy(1)
    needle = BAD_BATCHES[case](bad)
    split_in(bad, K)
    with pytest.raises(IngestError, match=needle):
        check_month(bad, months[1][1])


def test_a_table_with_a_header_and_no_rows_is_refused_alike_split_or_whole(months, month_copy, split_in):
    bad = month_copy(1)
    (bad / "labels.csv").write_text((bad / "labels.csv").read_text().splitlines()[0] + "\n")
    parts, whole = check_month(bad, months[1][1])
    parts.close()
    split_in(bad, K)
    parts, split = check_month(bad, months[1][1])
    parts.close()
    labels = next(v for v in split if v.table == "labels")
    assert not labels.success and labels.row_count == 0
    assert _comparable(split) == _comparable(whole)
