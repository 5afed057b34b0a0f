"""Synthetic StreamFlow month folders, shaped like the public telco churn data set.

`generate_months(out, users=7043, months=DEMO_MONTHS, start=date(2024, 1, 31), seed=42)` writes
`month_000/`, `month_001/`, ... each with the six CSVs of DESIGN.md and `_as_of.txt`.
Deterministic for a seed, vectorised (numpy + pyarrow), so a million users take seconds.

Month over month: tenure +1, total paid grows by the fee, some fees and contracts change,
usage drifts (and falls before churn), churned users leave and as many new users join
(the population size stays constant). Churn is drawn from a logistic model of the
features: short tenure, month-to-month, fiber, failed payments, tickets, falling usage.
The files carry the real files' quirks: `Yes`/`No` and `0`/`1` booleans, blank
`total_paid` for brand-new subscribers, and add-on columns hidden (empty) in the first month.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from streamflow.core.catalog import CONTRACT_TYPES, NET_SERVICES, TABLES
from streamflow.core.dates import add_months, month_end
from streamflow.core.errors import InvalidInput

# The first row of the public data set, kept so the course's examples (7590-VHVEG,
# monthly_fee 29.85, months_active 1, paperless billing) work on generated data.
COURSE_USER = "7590-VHVEG"
# The demo's months (`make run`, `streamflow seed`): three, so a trend over a month has a month to be
# trained on and a later one to be scored on (the feature lab's out-of-time lift)
DEMO_MONTHS = 3
MAX_USERS = 10_000_000  # a month of them is about 3.4 GB of CSVs and needs about 20 GB of memory to write
MAX_MONTHS = 120
_LETTERS = np.frombuffer(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ", dtype=np.uint8)
_DIGITS = np.frombuffer(b"0123456789", dtype=np.uint8)


def _ids(rng: np.random.Generator, n: int, taken: set[str] | None = None) -> np.ndarray:
    """n distinct ids like 7590-VHVEG, none of them in `taken`."""
    taken_arr = np.fromiter(taken, dtype="U10", count=len(taken)) if taken else np.empty(0, "U10")
    out = np.empty(0, "U10")
    while len(out) < n:
        k = int((n - len(out)) * 1.05) + 16
        d = _DIGITS[rng.integers(0, 10, size=(k, 4))]
        letters = _LETTERS[rng.integers(0, 26, size=(k, 5))]
        dash = np.full((k, 1), ord("-"), dtype=np.uint8)
        raw = np.ascontiguousarray(np.hstack([d, dash, letters])).view("S10").ravel()
        cand = np.unique(raw.astype("U10"))
        cand = cand[~np.isin(cand, taken_arr) & ~np.isin(cand, out)]
        rng.shuffle(cand)
        out = np.concatenate([out, cand[: n - len(out)]])
    return out


@dataclass
class Population:
    """Column arrays of the current subscribers (one row per user)."""

    cols: dict[str, np.ndarray]

    def __len__(self) -> int:
        return len(self.cols["user_id"])

    def take(self, mask: np.ndarray) -> Population:
        return Population({k: v[mask] for k, v in self.cols.items()})

    def concat(self, other: Population) -> Population:
        return Population({k: np.concatenate([v, other.cols[k]]) for k, v in self.cols.items()})


def _round_fee(x: np.ndarray) -> np.ndarray:
    return np.round(np.round(x * 20) / 20, 2)  # telco fees are multiples of 0.05


def _new_users(rng: np.random.Generator, n: int, as_of: date, ids: np.ndarray, joining: bool) -> Population:
    contract = rng.choice(3, size=n, p=[0.55, 0.21, 0.24])
    if joining:  # new subscribers this month
        months = np.zeros(n, dtype=np.int64)
        contract = rng.choice(3, size=n, p=[0.75, 0.15, 0.10])
    else:
        scale = np.array([14.0, 40.0, 56.0])[contract]
        months = np.clip(np.round(rng.gamma(1.6, scale / 1.6)), 0, 72).astype(np.int64)
    net = rng.choice(3, size=n, p=[0.34, 0.44, 0.22])  # DSL, Fiber optic, No
    internet = net != 2
    tv = internet & (rng.random(n) < 0.49)
    movies = internet & (rng.random(n) < 0.49)
    base = np.select([net == 0, net == 1], [rng.uniform(24, 60, n), rng.uniform(68, 95, n)], rng.uniform(18.25, 26, n))
    fee = _round_fee(base + 9.5 * tv + 9.5 * movies)
    total = np.round(fee * months * rng.uniform(0.92, 1.04, n), 2)
    add_p = np.where(internet, 1.0, 0.0)
    signup_days = (months * 30.44 + rng.integers(0, 28, n)).astype("timedelta64[D]")
    signup = np.datetime64(as_of, "D") - signup_days
    family = rng.random(n) < 0.48
    watch = rng.gamma(2.2, 14.0, n) * (1 + 0.5 * tv + 0.5 * movies)
    cols = {
        "user_id": ids,
        "signup_date": signup,
        "user_gender": np.where(rng.random(n) < 0.505, "Male", "Female"),
        "user_is_senior": rng.random(n) < 0.162,
        "has_family": family,
        "has_dependents": rng.random(n) < np.where(family, 0.52, 0.1),
        "months_active": months,
        "plan_stream_tv": tv,
        "plan_stream_movies": movies,
        "contract_type": np.asarray(CONTRACT_TYPES)[contract],
        "paperless_billing": rng.random(n) < 0.59,
        "monthly_fee": fee,
        "total_paid": total,
        "net_service": np.asarray(NET_SERVICES)[net],
        "add_on_security": rng.random(n) < 0.37 * add_p,
        "add_on_backup": rng.random(n) < 0.44 * add_p,
        "add_on_device_protect": rng.random(n) < 0.44 * add_p,
        "add_on_support": rng.random(n) < 0.37 * add_p,
        "watch_hours_30d": np.round(np.clip(watch, 0, 700), 2),
        "watch_prev": np.round(np.clip(watch, 0, 700), 2),
        "avg_session_mins_7d": np.round(np.clip(rng.normal(38, 14, n), 1, 600), 2),
        "unique_devices_30d": np.clip(rng.poisson(1.4, n) + 1, 1, 12),
        "skips_7d": rng.poisson(4.0, n),
        "rebuffer_events_7d": rng.poisson(np.where(net == 0, 3.0, 1.2)),
        "failed_payments_90d": np.clip(rng.poisson(np.where(rng.random(n) < 0.85, 0.05, 1.4)), 0, 9),
        "support_tickets_90d": rng.poisson(np.where(net == 1, 0.9, 0.4)),
    }
    if not joining and n:
        _pin_course_user(cols, as_of)
    return Population(cols)


def _pin_course_user(cols: dict[str, np.ndarray], as_of: date) -> None:
    values = {
        "user_id": COURSE_USER,
        "signup_date": np.datetime64(as_of, "D") - np.timedelta64(30, "D"),
        "user_gender": "Female",
        "user_is_senior": False,
        "has_family": True,
        "has_dependents": False,
        "months_active": 1,
        "plan_stream_tv": False,
        "plan_stream_movies": False,
        "contract_type": "Month-to-month",
        "paperless_billing": True,
        "monthly_fee": 29.85,
        "total_paid": 29.85,
        "net_service": "DSL",
        "add_on_security": False,
        "add_on_backup": True,
        "add_on_device_protect": False,
        "add_on_support": False,
        "failed_payments_90d": 0,
        "support_tickets_90d": 0,
    }
    for k, v in values.items():
        cols[k][0] = v


def _churn_labels(rng: np.random.Generator, p: Population) -> np.ndarray:
    c = p.cols
    m2m = c["contract_type"] == "Month-to-month"
    two = c["contract_type"] == "Two year"
    fiber = c["net_service"] == "Fiber optic"
    decline = np.clip((c["watch_prev"] - c["watch_hours_30d"]) / np.maximum(c["watch_prev"], 1.0), -1, 1)
    logit = (
        -2.3
        + 1.1 * m2m
        - 1.0 * two
        - 0.035 * c["months_active"]
        + 0.55 * fiber
        + 0.6 * c["failed_payments_90d"]
        + 0.35 * c["support_tickets_90d"]
        + 1.6 * decline
        + 0.35 * c["user_is_senior"]
        - 0.3 * c["add_on_support"]
    )
    churn = rng.random(len(p)) < 1.0 / (1.0 + np.exp(-logit))
    if len(p) and c["user_id"][0] == COURSE_USER:
        churn[0] = False
    return churn


def _evolve(rng: np.random.Generator, p: Population) -> Population:
    c = {k: v.copy() for k, v in p.cols.items()}
    n = len(p)
    c["months_active"] = c["months_active"] + 1
    c["total_paid"] = np.round(np.nan_to_num(c["total_paid"]) + c["monthly_fee"], 2)
    change = rng.random(n) < 0.06
    c["monthly_fee"] = np.where(
        change, _round_fee(np.clip(c["monthly_fee"] + rng.normal(0, 6, n), 18.25, 130)), c["monthly_fee"]
    )
    upgrade = (rng.random(n) < 0.02) & (c["contract_type"] == "Month-to-month")
    c["contract_type"] = np.where(upgrade, "One year", c["contract_type"])
    c["watch_prev"] = c["watch_hours_30d"]
    c["watch_hours_30d"] = np.round(np.clip(c["watch_hours_30d"] * rng.lognormal(-0.02, 0.25, n), 0, 700), 2)
    c["avg_session_mins_7d"] = np.round(np.clip(c["avg_session_mins_7d"] * rng.lognormal(0, 0.1, n), 1, 600), 2)
    c["skips_7d"] = rng.poisson(np.maximum(c["skips_7d"], 1) * 0.9 + 0.4)
    c["rebuffer_events_7d"] = rng.poisson(np.where(c["net_service"] == "DSL", 3.0, 1.2))
    c["failed_payments_90d"] = np.clip(
        rng.poisson(0.5 * c["failed_payments_90d"] + np.where(rng.random(n) < 0.85, 0.05, 1.0)), 0, 9
    )
    c["support_tickets_90d"] = rng.poisson(0.5 * c["support_tickets_90d"] + 0.3)
    if n and c["user_id"][0] == COURSE_USER:
        c["monthly_fee"][0] = 29.85
        c["failed_payments_90d"][0] = 0
    return Population(c)


def _wind_down(rng: np.random.Generator, p: Population, mask: np.ndarray) -> None:
    """A subscriber who decided to leave serves one last month, and it shows: viewing collapses,
    payments fail, tickets rise. A naive join of each user's latest row leaks exactly this."""
    c, n = p.cols, int(mask.sum())
    if not n:
        return
    c["watch_hours_30d"][mask] = np.round(c["watch_hours_30d"][mask] * rng.uniform(0.05, 0.35, n), 2)
    c["avg_session_mins_7d"][mask] = np.round(
        np.clip(c["avg_session_mins_7d"][mask] * rng.uniform(0.3, 0.7, n), 1, 600), 2
    )
    c["failed_payments_90d"][mask] = np.clip(c["failed_payments_90d"][mask] + rng.poisson(1.5, n), 0, 9)
    c["support_tickets_90d"][mask] = c["support_tickets_90d"][mask] + rng.poisson(1.0, n)
    c["skips_7d"][mask] = c["skips_7d"][mask] + rng.poisson(4.0, n)


def _price_rise(rng: np.random.Generator, p: Population) -> None:
    """A price rise on month-to-month plans (the demo's drift): fees up 12-25%, and more
    payments fail where they rose."""
    c = p.cols
    hit = c["contract_type"] == "Month-to-month"
    hit[c["user_id"] == COURSE_USER] = False
    n = int(hit.sum())
    c["monthly_fee"][hit] = _round_fee(np.clip(c["monthly_fee"][hit] * rng.uniform(1.12, 1.25, n), 18.25, 160))
    c["failed_payments_90d"][hit] = np.clip(c["failed_payments_90d"][hit] + rng.poisson(0.5, n), 0, 9)


def _yes_no(a: np.ndarray) -> np.ndarray:
    return np.where(a, "Yes", "No")


def _tables(p: Population, as_of: date, hide_add_ons: bool, rng: np.random.Generator) -> dict[str, pa.Table]:
    c = p.cols
    n = len(p)
    tickets = c["support_tickets_90d"]
    resolution = np.round(rng.gamma(2.0, 12.0, n), 2)
    total = c["total_paid"].astype(float)
    new = c["months_active"] == 0
    add_ons = {}
    for name in ("add_on_security", "add_on_backup", "add_on_device_protect", "add_on_support"):
        add_ons[name] = pa.nulls(n, pa.string()) if hide_add_ons else pa.array(_yes_no(c[name]))
    return {
        "users": pa.table(
            {
                "user_id": c["user_id"],
                "signup_date": pa.array(c["signup_date"].astype("datetime64[D]")),
                "user_gender": c["user_gender"],
                "user_is_senior": c["user_is_senior"].astype(np.int8),  # 0/1 like SeniorCitizen
                "has_family": _yes_no(c["has_family"]),
                "has_dependents": _yes_no(c["has_dependents"]),
            }
        ),
        "subscriptions": pa.table(
            {
                "user_id": c["user_id"],
                "months_active": c["months_active"],
                "plan_stream_tv": _yes_no(c["plan_stream_tv"]),
                "plan_stream_movies": _yes_no(c["plan_stream_movies"]),
                "contract_type": c["contract_type"],
                "paperless_billing": _yes_no(c["paperless_billing"]),
                "monthly_fee": c["monthly_fee"],
                "total_paid": pa.array(total, mask=new),  # blank for brand-new subscribers
                "net_service": c["net_service"],
                **add_ons,
            }
        ),
        "usage_agg_30d": pa.table(
            {
                "user_id": c["user_id"],
                "watch_hours_30d": c["watch_hours_30d"],
                "avg_session_mins_7d": c["avg_session_mins_7d"],
                "unique_devices_30d": c["unique_devices_30d"],
                "skips_7d": c["skips_7d"],
                "rebuffer_events_7d": c["rebuffer_events_7d"],
            }
        ),
        "payments_agg_90d": pa.table({"user_id": c["user_id"], "failed_payments_90d": c["failed_payments_90d"]}),
        "support_agg_90d": pa.table(
            {
                "user_id": c["user_id"],
                "support_tickets_90d": tickets,
                "ticket_avg_resolution_hrs_90d": pa.array(resolution, mask=tickets == 0),
            }
        ),
        "labels": pa.table({"user_id": c["user_id"], "churn_label": np.where(c["churn"], "True", "False")}),
    }


def write_month(folder: Path, tables: dict[str, pa.Table], as_of: date) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    opts = pacsv.WriteOptions(include_header=False, quoting_style="none")
    for t in TABLES:
        table = tables[t.name]
        assert table.column_names == t.column_names, (t.name, table.column_names)
        with open(folder / t.csv, "wb") as fh:  # a plain header, like the real exports
            fh.write((",".join(t.column_names) + "\n").encode())
            pacsv.write_csv(table, fh, write_options=opts)
    (folder / "_as_of.txt").write_text(as_of.isoformat() + "\n")


def generate_months(
    out: Path | str,
    users: int = 7043,
    months: int = DEMO_MONTHS,
    start: date = date(2024, 1, 31),
    seed: int = 42,
    hide_add_ons_first_month: bool = True,
    price_rise_month: int | None = 1,
) -> list[tuple[Path, date]]:
    """Write `months` month folders of `users` subscribers each; return (folder, as_of) pairs."""
    for what, n, most in (("--users", users, MAX_USERS), ("--months", months, MAX_MONTHS)):
        if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= most:
            raise InvalidInput(f"{what} is a whole number from 1 to {most:,}; got {n!r}")
    start = month_end(start)
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise InvalidInput(f"{out} is a file: --out names the folder the month folders are written in")
    rng = np.random.default_rng(seed)
    ids = _ids(rng, users)
    ids[0] = COURSE_USER
    pop = _new_users(rng, users, start, ids, joining=False)
    pop.cols["leaving"] = np.zeros(users, dtype=bool)
    written: list[tuple[Path, date]] = []
    for m in range(months):
        as_of = add_months(start, m)
        if m > 0:
            pop = pop.take(~pop.cols["leaving"])  # those serving their last month are gone
            leaving = pop.cols["churn"].copy()  # decided to leave at the previous month end
            pop = _evolve(rng, pop)
            pop.cols["leaving"] = leaving
            _wind_down(rng, pop, leaving)
            if m == price_rise_month:
                _price_rise(rng, pop)
            n_new = users - len(pop)
            new_ids = _ids(rng, n_new, taken=set(pop.cols["user_id"].tolist()))
            newcomers = _new_users(rng, n_new, as_of, new_ids, joining=True)
            newcomers.cols["churn"] = np.zeros(n_new, dtype=bool)
            newcomers.cols["leaving"] = np.zeros(n_new, dtype=bool)
            newcomers.cols["total_paid"] = newcomers.cols["total_paid"].astype(float)
            pop = pop.concat(newcomers)
        pop.cols["total_paid"] = pop.cols["total_paid"].astype(float)
        pop.cols["churn"] = _churn_labels(rng, pop) | pop.cols["leaving"]
        folder = out / f"month_{m:03d}"
        write_month(folder, _tables(pop, as_of, hide_add_ons_first_month and m == 0, rng), as_of)
        written.append((folder, as_of))
    return written


def month_as_workbook(folder: Path, out: Path) -> Path:
    """A month folder's six CSV files as one Excel workbook with a sheet per table, each cell typed
    as Excel types it (numbers, dates, booleans; text as text; blank as empty) through the
    catalog's coercion: a month as a team that keeps it in Excel has it (tests, benchmarks).
    Needs openpyxl (a dev requirement)."""
    import openpyxl
    import pandas as pd

    from streamflow.ingest.coerce import coerce_table
    from streamflow.ingest.folder import read_raw

    wb = openpyxl.Workbook(write_only=True)
    for t in TABLES:
        typed, _ = coerce_table(t, read_raw(Path(folder) / t.csv))
        ws = wb.create_sheet(t.name)
        ws.append(list(typed.columns))
        for row in typed.astype(object).itertuples(index=False):
            ws.append([None if v is None or v is pd.NA or (isinstance(v, float) and v != v) else v for v in row])
    wb.save(out)
    return Path(out)
