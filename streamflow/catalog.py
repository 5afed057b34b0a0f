"""`streamflow.catalog`, the course's import path (feature_repo/ and plain Feast clients use it): the
same module object as `streamflow.core.catalog`, where it lives now."""

import sys

from streamflow.core import catalog as _module

sys.modules[__name__] = _module
