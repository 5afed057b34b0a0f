"""Derived features: declared as data in derived_features.yaml (written by `streamflow feature add`
or the Feature lab page), computed at write into derived_features_snapshots, served by one view.
No declaration, no view (see streamflow/features/derived.py for the language and the windows).
"""

from entities import user

from streamflow.feast_repo import derived_view

derived_features_fv = derived_view(user)
