"""`streamflow ...`: the command line face of the library (the app is the other one).

One module per command group, each with its options beside its handlers (Feast's own `feast/cli/`
shape); each module's `register(sub)` adds its commands. Heavy libraries (Great Expectations,
Feast) are imported inside the commands that need them, so `streamflow --help` and
`streamflow status` start fast. A refusal is raised as the error family's class; `main` maps it
to the class's exit code (`streamflow/core/errors.py` holds the numbers).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys

from streamflow.cli import admin, datasets, features, ingest, lab, monitor, quality

GROUPS = (ingest, features, lab, datasets, quality, monitor, admin)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="streamflow", description="StreamFlow churn feature platform")
    sub = p.add_subparsers(dest="command", required=True)
    for group in GROUPS:
        group.register(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    """Run a command; a StreamflowError exits with its class's code (see streamflow/core/errors.py)."""
    from streamflow.core.errors import StreamflowError, from_backend

    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # the reader went away (`streamflow skew | head`): no traceback for it
        with contextlib.suppress(OSError, ValueError):  # what Python flushes at exit goes nowhere
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # 128 + SIGPIPE, as a shell reports a command its pipe cut short
    except Exception as exc:  # noqa: BLE001 - mapped below, else re-raised
        err = exc if isinstance(exc, StreamflowError) else from_backend(exc)
        if err is None:
            raise
        print(f"error: {err}", file=sys.stderr)
        return err.exit_code
