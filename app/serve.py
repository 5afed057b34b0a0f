"""Serve the studio: `python app/serve.py [streamlit run options]`, what `make run`, the image and
compose start (`streamlit run app/streamlit_app.py` works too, without the head start below).

Streamlit runs every session's script in this process, so a module imported here is imported for
all of them. While the server starts, a thread opens the Feast store once: Feast's import (about
4.4 s, 1.25 s of it typeguard instrumenting on-demand views), the store classes, and on the lake
profile the Spark session. Then it imports what the pages draw with, Plotly (and draws one small
figure: its validators and template load on first use), and scikit-learn, which the model check
and Explain one user need. Without it, the first visitor of a new server waited for all of that,
and the first visitor of each page for its share (docs/performance.md). The store opened here is
dropped; the app opens its own (`data.store`) from modules already imported. A store that cannot
open (a database not up yet) is left to the first page, which says why.
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path

APP = Path(__file__).with_name("streamlit_app.py")


def preload() -> None:
    for step in (_store, _plotly, _sklearn):  # in the order pages need them: every page opens the store
        try:
            step()
        except Exception:  # noqa: BLE001, S112 - a head start only: the page that needs it reports it
            continue


def _store() -> None:
    from streamflow.core.config import load_settings
    from streamflow.features.store import get_store

    get_store(load_settings(), check_sources=False)


def _plotly() -> None:
    import plotly.express as px
    import plotly.graph_objects  # noqa: F401 - the pages' other way to draw

    px.bar(x=[0], y=[0]).to_json()  # a figure through what st.plotly_chart calls: validators, template, JSON


def _sklearn() -> None:
    import sklearn.ensemble  # noqa: F401 - the model check's fits and the kept model's scoring
    import sklearn.impute  # noqa: F401
    import sklearn.linear_model  # noqa: F401
    import sklearn.pipeline  # noqa: F401
    import sklearn.preprocessing  # noqa: F401


def main(argv: list[str] | None = None) -> None:
    from streamlit.web import cli

    threading.Thread(target=preload, name="preload-feast", daemon=True).start()
    sys.argv = ["streamlit", "run", str(APP), *(sys.argv[1:] if argv is None else argv)]
    cli.main(prog_name="streamlit")


if __name__ == "__main__":
    main()
