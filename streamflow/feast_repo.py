"""`streamflow.feast_repo`, the course's import path (feature_repo/ and plain Feast clients use it): the
same module object as `streamflow.features.repo`, where it lives now."""

import sys

from streamflow.features import repo as _module

sys.modules[__name__] = _module
