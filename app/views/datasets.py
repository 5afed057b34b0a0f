"""Datasets: training frames kept as Feast saved datasets: list, preview, statistics, download,
build, rebuild, delete, and two datasets side by side."""

import pandas as pd
import streamlit as st
from data import clear, dataset_frame, dataset_summary, datasets, feature_services, settings, store
from door import write_guard
from ui import friendly_errors, nothing_to_show, require_applied, require_snapshots

from streamflow.core import links
from streamflow.core.catalog import SERVICE
from streamflow.features import datasets as kept
from streamflow.monitoring.over_time import delete_dataset

st.title("Datasets")
st.caption(
    "Point-in-time training frames kept through Feast's saved-dataset API, with how each was made. "
    "A dataset whose month was re-ingested, or whose definitions changed, is marked stale with the reason."
)

with friendly_errors():
    dates = require_snapshots()
    fs = require_applied()
    allowed = write_guard("build, rebuild or delete datasets")

    with st.expander("Build and keep a dataset", expanded=not datasets()):
        services = sorted(s.name for s in feature_services())
        views = sorted(v.name for v in fs.list_feature_views(allow_cache=True))
        c1, c2, c3 = st.columns([1, 2, 1])
        as_of = c1.selectbox("as_of", dates, index=len(dates) - 1, format_func=str, key="ds_as_of")
        chosen = c2.multiselect("Features", services + views, default=[SERVICE], key="ds_features")
        labels = c3.toggle("Labels", value=True, key="ds_labels")
        if st.button("Build and keep", type="primary", disabled=not allowed or not chosen, key="ds_create"):
            with st.status(f"Building the frame at {as_of}...", expanded=True) as box:
                try:
                    made = kept.create(as_of, chosen, labels, settings=settings(), store=store(), say=box.write)
                except kept.AlreadyKept as exc:  # offered, not kept twice
                    box.update(label="Kept already", state="complete")
                    st.info(str(exc).replace(" (--again)", ""))
                    st.session_state[links.key("datasets", "dataset")] = exc.dataset.name
                else:
                    box.update(label=f"Kept {made.name}: {made.rows:,} rows in {made.seconds:.1f}s", state="complete")
            clear()

    rows = datasets()
    if not rows:
        nothing_to_show("No dataset kept yet: build one above, or `streamflow dataset create --as-of 2024-01-31`.")
        st.stop()
    table = pd.DataFrame(
        [
            {"name": d.name, "as_of": d.as_of, "features": d.features, "labels": d.labels, "rows": d.rows,
             "built": f"{d.created_at:%Y-%m-%d %H:%M}", "seconds": round(d.seconds, 1),
             "stale": "⚠️ " + "; ".join(d.stale_because) if d.stale else "no"}
            for d in rows
        ]
    )  # fmt: skip
    st.dataframe(table, hide_index=True)

    names = [d.name for d in rows]
    pick = st.selectbox("Dataset", names, key=links.key("datasets", "dataset"), bind="query-params")
    ds = next(d for d in rows if d.name == pick)
    for reason in ds.stale_because:
        st.warning(f"Stale: {reason}. Rebuild to bring it up to date.")
    st.caption(f"checksum `{ds.checksum}` · snapshot {ds.snapshot_as_of} · definitions `{ds.definitions}`")
    tf = dataset_frame(ds)
    df = tf.frame
    st.subheader("Preview")
    st.dataframe(df.head(50), hide_index=True)
    st.subheader("Feature statistics")
    st.dataframe(dataset_summary(ds), hide_index=True)

    d1, d2, d3, d4 = st.columns(4)  # files are written when a button is pressed, not on every render
    d1.download_button(
        "Download CSV", lambda: df.to_csv(index=False).encode(), file_name=f"{ds.name}.csv", mime="text/csv",
        on_click="ignore",
    )  # fmt: skip
    d2.download_button(
        "Download Parquet", lambda: df.to_parquet(index=False), file_name=f"{ds.name}.parquet",
        mime="application/octet-stream", on_click="ignore",
    )  # fmt: skip
    if d3.button("Rebuild", disabled=not allowed, key="ds_rebuild"):
        with st.spinner(f"Rebuilding {ds.name}..."):
            again = kept.rebuild(ds.name, settings(), store())
        clear()
        same = "unchanged" if again.checksum == ds.checksum else "changed"
        st.success(f"Rebuilt {ds.name}: {again.rows:,} rows, content {same} (checksum {again.checksum[:12]})")
    if d4.button("Delete", disabled=not allowed, key="ds_delete"):
        delete_dataset(settings(), ds.name, store())
        clear()
        st.rerun()

    if len(names) > 1 and st.toggle(
        "Compare two datasets side by side", key=links.key("datasets", "diff"), bind="query-params"
    ):
        c1, c2 = st.columns(2)
        a = c1.selectbox("A", names, index=0, key=links.key("datasets", "a"), bind="query-params")
        b = c2.selectbox("B", names, index=1, key=links.key("datasets", "b"), bind="query-params")
        if a != b:
            by_name = {d.name: d for d in rows}
            diff = kept.diff_frames(dataset_frame(by_name[a]).frame, dataset_frame(by_name[b]).frame)
            m1, m2, m3 = st.columns(3)
            m1.metric("Rows", f"{diff['rows'][0]:,} → {diff['rows'][1]:,}")
            m2.metric("Users added", f"{diff['users_added']:,}")
            m3.metric("Users removed", f"{diff['users_removed']:,}")
            if diff["only_in_a"] or diff["only_in_b"]:
                st.caption(
                    f"Columns only in A: {diff['only_in_a'] or 'none'} · only in B: {diff['only_in_b'] or 'none'}"
                )
            st.dataframe(diff["statistics"])
