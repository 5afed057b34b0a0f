"""The course scripts without their optional extra: one line saying what to install, no traceback."""

from __future__ import annotations

import subprocess
import sys

from tests.support import REPO


def test_the_prefect_flow_without_prefect_says_what_to_install():
    code = (
        "import runpy, sys; sys.modules['prefect'] = None; sys.argv = ['ingest_flow.py', '--help']; "
        "runpy.run_path('scripts/ingest_flow.py', run_name='__main__')"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 1, out.stderr
    assert "requirements-prefect.txt" in out.stderr and "Traceback" not in out.stderr, out.stderr
