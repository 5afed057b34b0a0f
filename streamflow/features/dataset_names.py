"""A kept dataset's name: checked, defaulted, and never taken from another frame."""

from __future__ import annotations

import re
from datetime import date

from streamflow.core.errors import InvalidInput

NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")
Request = tuple[date, str, bool]  # the frame a dataset holds: as_of, features asked for, labels or not


def request_text(as_of: date, features: str, labels: bool) -> str:
    return f"the frame at {as_of} of {features}{'' if labels else ' (no labels)'}"


def default_name(as_of: date, features: str, labels: bool) -> str:
    return f"{features.replace(',', '+').replace(':', '.')}_{as_of.isoformat()}" + ("" if labels else "_nolabels")


def name_for(name: str | None, request: Request, ours: dict[str, Request], taken: set[str]) -> str:
    """The name a new dataset of `request` is kept under, given the requests of the datasets kept
    (`ours`) and every saved dataset's name in the registry (`taken`): `name`, refused when it holds
    another frame (another request, or a saved dataset that is not one of ours: a plain Feast
    client's, another profile's), which is never overwritten; with no name, the default one, or the
    first free `<default>_2`, `_3`... when that one is taken so."""
    if name is not None and not NAME_RE.fullmatch(name):
        raise InvalidInput(
            f"dataset name {name!r}: letters, digits, '_', '.', '-' (up to 100), starting with a letter or digit"
        )

    def free(n: str) -> bool:
        return n not in taken or ours.get(n) == request

    if name is None:
        base = default_name(*request)
        return next(n for n in (base, *(f"{base}_{i}" for i in range(2, 10_000))) if free(n))
    if not free(name):
        what = request_text(*ours[name]) if name in ours else "a saved dataset StreamFlow did not make"
        raise InvalidInput(
            f"dataset {name!r} holds another frame ({what}): a kept dataset is never replaced by another "
            f"frame; choose another name, or `streamflow dataset delete {name}` first"
        )
    return name
