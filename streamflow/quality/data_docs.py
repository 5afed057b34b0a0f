"""Great Expectations' own Data Docs, built from the validation results this store keeps.

Every validation (failed runs included; the Ingest page's dry runs are not stored) is kept in
`validation_results` with Great Expectations' own result document (`ge_result`). `build` loads
each into a fresh ephemeral Great Expectations context's validation results store, with the
suites the catalog defines, and has Great Expectations render its static site (an index, one
page per suite, one per validation, under the run and as_of): what GE users are used to opening.
A month validated in buckets of users has one page per bucket.

Offline and over http: Great Expectations' pages load bootstrap, jQuery, Font Awesome and vega from
CDNs, so a site opened without a network rendered without its styles. `build` copies the same files
(vendored byte for byte in `data_docs_assets/`, see its LICENSES.md) into the site and points every
page at the copies; a page of the site names no other host for anything it loads.

Where: the folder the studio serves (`app/static/data_docs`, at
http://<studio>/app/static/data_docs/index.html, Streamlit's static serving) unless another folder
is given; `streamflow data-docs [--out DIR]`, and a button on the Data quality page, which links it.
Coercion failures (a value that is not a number, a date) are
the library's own checks, not Great Expectations': they show on the Data quality page only.
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from streamflow.core import links
from streamflow.core.catalog import TABLES
from streamflow.core.config import Settings, load_settings
from streamflow.core.errors import InvalidInput
from streamflow.storage import db

SITE = "streamflow"
ASSETS = Path(__file__).with_name("data_docs_assets")
VENDOR = "static/vendor"  # where a site keeps its copies of the assets
# each address Great Expectations' templates load, and the vendored file that is the same bytes
CDN = {
    "https://maxcdn.bootstrapcdn.com/bootstrap/4.3.1/css/bootstrap.min.css": "css/bootstrap.min.css",
    "https://stackpath.bootstrapcdn.com/bootstrap/4.3.1/js/bootstrap.min.js": "js/bootstrap.min.js",
    "https://unpkg.com/bootstrap-table@1.19.1/dist/bootstrap-table.min.css": "css/bootstrap-table.min.css",
    "https://unpkg.com/bootstrap-table@1.19.1/dist/bootstrap-table.min.js": "js/bootstrap-table.min.js",
    "https://unpkg.com/bootstrap-table@1.19.0/dist/extensions/filter-control/bootstrap-table-filter-control.min.css": "css/bootstrap-table-filter-control.min.css",
    "https://unpkg.com/bootstrap-table@1.19.0/dist/extensions/filter-control/bootstrap-table-filter-control.css": "css/bootstrap-table-filter-control.min.css",
    "https://unpkg.com/bootstrap-table@1.19.1/dist/extensions/filter-control/bootstrap-table-filter-control.min.js": "js/bootstrap-table-filter-control.min.js",
    "https://cdnjs.cloudflare.com/ajax/libs/bootstrap-datepicker/1.9.0/css/bootstrap-datepicker.min.css": "css/bootstrap-datepicker.min.css",
    "https://cdnjs.cloudflare.com/ajax/libs/bootstrap-datepicker/1.9.0/js/bootstrap-datepicker.min.js": "js/bootstrap-datepicker.min.js",
    "https://cdn.jsdelivr.net/npm/@forevolve/bootstrap-dark@1.1.0/dist/css/bootstrap-prefers-dark.css": "css/bootstrap-prefers-dark.min.css",
    "https://cdnjs.cloudflare.com/ajax/libs/font-awesome/6.6.0/css/all.min.css": "css/fontawesome.min.css",
    "https://code.jquery.com/jquery-3.7.1.min.js": "js/jquery.min.js",
    "https://cdnjs.cloudflare.com/ajax/libs/popper.js/1.12.9/umd/popper.min.js": "js/popper.min.js",
    "https://cdn.jsdelivr.net/npm/vega@5": "js/vega.min.js",
    "https://cdn.jsdelivr.net/npm/vega-lite@5": "js/vega-lite.min.js",
    "https://cdn.jsdelivr.net/npm/vega-embed@6": "js/vega-embed.min.js",
}
GE_IMAGES = "https://great-expectations-web-assets.s3.us-east-2.amazonaws.com/"  # GE's logo; the site has it
# what a page loads: <link href>, <script src>, <img src> (an <a href> is a link to follow, not a load)
STATIC_REF = re.compile(r'\b(href|src)="(?:\./|(?:\.\./)*)static/')
LOADS = re.compile(r"<(?:link|script|img)\b[^>]*?\b(?:href|src)=\"(https?://[^\"]*)\"", re.I)


@dataclass
class DataDocs:
    index: Path
    validations: int  # result pages written
    skipped: int  # stored validations without a Great Expectations result (none in practice)
    seconds: float
    url: str | None = None  # where the studio serves it, when it is in the studio's folder


def served_dir(settings: Settings) -> Path:
    """The folder the studio serves the site from (Streamlit's static folder beside the app)."""
    return settings.home / "app" / "static" / "data_docs"


def default_dir(settings: Settings) -> Path:
    """The studio's folder in a checkout (it has `app/static/`), else `.streamflow/data_docs`."""
    served = served_dir(settings)
    return served if served.parent.is_dir() else settings.state_dir / "data_docs"


def _served_url(out: Path) -> str | None:
    parent = out.resolve().parent
    return links.served(f"{out.name}/index.html") if (parent.name, parent.parent.name) == ("static", "app") else None


def external_loads(html: str) -> list[str]:
    """The addresses on other hosts a page loads something from (none in a site `build` wrote)."""
    return LOADS.findall(html)


def _offline(site: Path) -> None:
    """Copy the vendored assets into the site and point every page at them (relative to the page)."""
    shutil.copytree(ASSETS, site / VENDOR, ignore=shutil.ignore_patterns("*.md"))
    for page in site.rglob("*.html"):
        up = "../" * (len(page.relative_to(site).parts) - 1)
        html = page.read_text(encoding="utf-8")
        for address, local in CDN.items():
            html = html.replace(f'"{address}"', f'"{up}{VENDOR}/{local}"')
        html = html.replace(GE_IMAGES, f"{up}static/images/")
        # GE counts a validation page's depth from its suite name, one level short for a run name
        # without dots: its own styles, scripts and favicon pointed one folder too low
        html = STATIC_REF.sub(rf'\1="{up}static/', html)
        if left := external_loads(html):
            raise RuntimeError(f"{page.name} still loads {left[0]}: add it to data_docs.CDN")  # a newer GE template
        page.write_text(html, encoding="utf-8")


def _results(ge: dict) -> list[dict]:
    """A stored result document, or a bucketed month's per-bucket documents."""
    if "buckets" in ge:
        return [r for r in ge.get("results", []) if r]
    return [ge]


def build(out: Path | str | None = None, settings: Settings | None = None) -> DataDocs:
    """Render the site from every stored validation into `out` (default `default_dir`), with its
    assets (offline), replacing a site built there before; a non-empty folder that is not one is refused."""
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
        _offline(site)
        if out.exists():
            shutil.rmtree(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(site), str(out))
    return DataDocs(out / "index.html", written, skipped, time.perf_counter() - t0, _served_url(out))


def zipped(index: Path) -> bytes:
    """The site of `index` as one zip (the app offers it for download: open index.html from it)."""
    import io
    import zipfile

    buf = io.BytesIO()
    root = index.parent
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for p in sorted(root.rglob("*")):
            if p.is_file():
                zf.write(p, Path("data_docs") / p.relative_to(root))
    return buf.getvalue()
