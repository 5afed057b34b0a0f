"""Great Expectations' own Data Docs, built from the validation results this store keeps.

Every validation (failed runs included; the Ingest page's dry runs are not stored) is kept in
`validation_results` with Great Expectations' own result document (`ge_result`). `build` loads
each into a fresh ephemeral Great Expectations context's validation results store, with the
suites the catalog defines, and has Great Expectations render its static site (an index, one
page per suite, one per validation, under the run and as_of): what GE users are used to opening.
A month validated in buckets of users has one page per bucket. Written under
`.streamflow/data_docs/` unless another folder is given; `streamflow data-docs [--out DIR]`, and
a button on the Data quality page. Coercion failures (a value that is not a number, a date) are
the library's own checks, not Great Expectations': they show on the Data quality page only.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from streamflow.core.catalog import TABLES
from streamflow.core.config import Settings, load_settings
from streamflow.core.errors import InvalidInput
from streamflow.storage import db

SITE = "streamflow"


@dataclass
class DataDocs:
    index: Path
    validations: int  # result pages written
    skipped: int  # stored validations without a Great Expectations result (none in practice)
    seconds: float


def default_dir(settings: Settings) -> Path:
    return settings.state_dir / "data_docs"


def _results(ge: dict) -> list[dict]:
    """A stored result document, or a bucketed month's per-bucket documents."""
    if "buckets" in ge:
        return [r for r in ge.get("results", []) if r]
    return [ge]


def build(out: Path | str | None = None, settings: Settings | None = None) -> DataDocs:
    """Render the site from every stored validation into `out` (default `.streamflow/data_docs`),
    replacing a site built there before; a non-empty folder that is not one is refused."""
    from great_expectations.core.expectation_validation_result import expectationSuiteValidationResultSchema
    from great_expectations.core.run_identifier import RunIdentifier
    from great_expectations.data_context.types.resource_identifiers import (
        ExpectationSuiteIdentifier,
        ValidationResultIdentifier,
    )

    from streamflow.quality.suites import REFERENTIAL, _gx, _referential_expectations, expectations_for

    settings = settings or load_settings()
    out = Path(out) if out else default_dir(settings)
    if out.exists() and any(out.iterdir()) and not (out / "index.html").is_file():
        raise InvalidInput(f"{out} is not empty and holds no Data Docs site: give an empty or new folder")
    t0 = time.perf_counter()
    with db.connection(settings) as conn:
        rows = conn.execute(
            "SELECT run_id, table_name, as_of, validated_at, ge_result FROM validation_results ORDER BY id"
        ).fetchall()

    gx = _gx()
    ctx = gx.get_context(mode="ephemeral")
    with tempfile.TemporaryDirectory(prefix="streamflow-data-docs-") as tmp:
        site = Path(tmp) / "site"
        ctx.add_data_docs_site(
            SITE,
            {
                "class_name": "SiteBuilder",
                "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
                "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(site)},
            },
        )
        for name, build_exps in [(t.name, lambda t=t: expectations_for(t)) for t in TABLES] + [
            (REFERENTIAL, _referential_expectations)
        ]:
            suite = gx.ExpectationSuite(name=name)
            for e in build_exps():
                suite.add_expectation(e)
            ctx.suites.add(suite)
        written = skipped = 0
        for run_id, table, as_of, validated_at, ge in rows:
            docs = _results(ge if isinstance(ge, dict) else json.loads(ge)) if ge else []
            if not docs:
                skipped += 1
                continue
            for i, doc in enumerate(docs):
                result = expectationSuiteValidationResultSchema.load(doc)
                batch = f"{table}-{as_of or 'no-as_of'}" + (f"-bucket{i + 1}" if len(docs) > 1 else "")
                key = ValidationResultIdentifier(
                    ExpectationSuiteIdentifier(name=result.suite_name),
                    RunIdentifier(run_name=f"run {run_id[:8]}", run_time=validated_at),
                    batch_identifier=batch,
                )
                ctx.validation_results_store.set(key, result)
                written += 1
        ctx.build_data_docs(site_names=[SITE])
        if out.exists():
            shutil.rmtree(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(site), str(out))
    return DataDocs(out / "index.html", written, skipped, time.perf_counter() - t0)


def zipped(docs: DataDocs) -> bytes:
    """The site as one zip (the app offers it for download: open index.html from it)."""
    import io
    import zipfile

    buf = io.BytesIO()
    root = docs.index.parent
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for p in sorted(root.rglob("*")):
            if p.is_file():
                zf.write(p, Path("data_docs") / p.relative_to(root))
    return buf.getvalue()
