"""`python -m streamflow.cli ...`, the same as the `streamflow` command."""

import sys

from streamflow.cli import main

sys.exit(main())
