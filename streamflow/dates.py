"""`streamflow.dates`, the course's import path (feature_repo/ and plain Feast clients use it): the
same module object as `streamflow.core.dates`, where it lives now."""

import sys

from streamflow.core import dates as _module

sys.modules[__name__] = _module
