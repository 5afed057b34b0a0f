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

Then the objects the head start made (about 290,000: modules, Feast's protos, Plotly's
validators) are moved out of the cyclic collector's reach (`gc.freeze`): they live as long as
the process, and each full collection walked them again, the GIL held, pausing every session
(~190 ms at a time). The app's `.streamlit/config.toml` also turns off Streamlit's full
collection after every script run, for the same reason.
"""

from __future__ import annotations

import gc
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
    gc.collect()  # what the steps dropped (the store opened here) goes first: frozen, it would stay
    gc.freeze()


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
