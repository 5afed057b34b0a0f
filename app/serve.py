"""Serve the studio: `python app/serve.py [streamlit run options]`, what `make run`, the image and
compose start (`streamlit run app/streamlit_app.py` works too, without the head start below).

Streamlit runs every session's script in this process, so a module imported here is imported for
all of them. While the server starts, a thread opens the Feast store once: Feast's import (about
4.4 s, 1.25 s of it typeguard instrumenting on-demand views), the store classes, and on the lake
profile the Spark session (Plotly, which the pages draw with, comes with Feast's import). Then it
imports scikit-learn (0.8 s), which the model check and Explain one user need. Without it, the
first visitor of a new server waited for all of that, and the first visitor of those pages for
scikit-learn (docs/performance.md). The store opened here is dropped; the app opens its own
(`data.store`) from modules already imported. A store that cannot open (a database not up yet) is
left to the first page, which says why.
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path

APP = Path(__file__).with_name("streamlit_app.py")


def preload() -> None:
    for step in (_store, _sklearn):  # in the order pages need them: every page opens the store
        try:
            step()
        except Exception:  # noqa: BLE001, S112 - a head start only: the page that needs it reports it
            continue


def _store() -> None:
    from streamflow.core.config import load_settings
    from streamflow.features.store import get_store

    get_store(load_settings(), check_sources=False)


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
