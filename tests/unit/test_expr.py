"""The derived features' language: what it accepts, what it refuses (in one line), the SQL it writes,
and the declarations' checks. The values it computes are tested on a real PostgreSQL against a
pandas reference (tests/integration/test_feature_lab.py)."""

from __future__ import annotations

import pytest

from streamflow.core.errors import InvalidInput
from streamflow.features import derived, derived_sql
from streamflow.features.derived import Derived
from streamflow.features.expr import BOOLEAN, NUMBER, compile_expression, feature_columns


@pytest.mark.parametrize(
    ("text", "kind", "inputs"),
    [
        ("monthly_fee / (watch_hours_30d + 1)", NUMBER, ("monthly_fee", "watch_hours_30d")),
        (
            "failed_payments_90d > 0 and contract_type == 'Month-to-month'",
            BOOLEAN,
            ("failed_payments_90d", "contract_type"),
        ),
        ("coalesce(total_paid, 0) / greatest(months_active, 1)", NUMBER, ("total_paid", "months_active")),
        ("clip(log1p(skips_7d), 0, 3)", NUMBER, ("skips_7d",)),
        ("if(has_family, 1, 0) + abs(-2)", NUMBER, ("has_family",)),
        (
            "contract_type in ('One year', 'Two year') or not paperless_billing",
            BOOLEAN,
            ("contract_type", "paperless_billing"),
        ),
        ("ticket_avg_resolution_hrs_90d is not null", BOOLEAN, ("ticket_avg_resolution_hrs_90d",)),
        ("watch_hours_30d between 1 and 10", BOOLEAN, ("watch_hours_30d",)),
        # a literal null where it can change nothing but its own place
        ("coalesce(null, monthly_fee) + greatest(null, skips_7d)", NUMBER, ("monthly_fee", "skips_7d")),
        ("if(null, 1, monthly_fee) > 0 or null", BOOLEAN, ("monthly_fee",)),
        ("watch_hours_30d % 7", NUMBER, ("watch_hours_30d",)),
    ],
)
def test_accepted_expressions(text, kind, inputs):
    c = compile_expression(text)
    assert c.kind == kind and c.inputs == inputs


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("nope + 1", "unknown column 'nope'"),
        ("churn_label", "unknown column 'churn_label'"),  # the target is never an input
        ("monthly_fee + contract_type", "expected a number"),
        ("monthly_fee and has_family", "expected a boolean"),
        ("has_family > true", "booleans compare only"),
        ("__import__('os')", "unknown function '__import__'"),
        ("os.system('ls')", "attribute"),
        ("monthly_fee.__class__", "attribute"),
        ("lambda x: x", "not an expression"),
        ("pg_sleep(10)", "unknown function 'pg_sleep'"),
        ("(select password from pg_shadow)", "not part of the expression language"),
        ("monthly_fee::text", "not part of the expression language"),
        ("1; drop table users", "one expression"),
        ("contract_type = 'Monthly'", "no value 'Monthly'"),
        ("if(has_family, 1)", "three arguments"),
        ("", "empty"),
        ("null", "always null"),
        ("monthly_fee > null", "comparison with null"),  # `is null` is the test for null
        ("monthly_fee + null", "null for every row"),
        ("log1p(null) + monthly_fee", "null for every row"),
        ("x" * 600, "longer than"),
        # another language's habits, told in this one's words and quoting the user's own text
        ("monthly_fee // 2", "no `//`: a / b divides"),
        ("monthly_fee ** 2", "no power operator"),
        ("monthly_fee * 1_000", "without `_` (1000, not 1_000) (in 'monthly_fee * 1_000')"),
        ("0x10 * monthly_fee", "in decimal"),
        ("contract_type[0]", "(in 'contract_type[0]')"),
        ("monthly_fee @ 2", "no bitwise or matrix operator"),
        ('contract_type == "Month-to-month"', "text is written in single quotes: 'Month-to-month'"),
        ("monthly_fee if has_family else 0", "write a condition as if(cond, then, else)"),
        ("monthly_fee +", "cannot be read past character 13"),
    ],
)
def test_refused_in_one_line(text, words):
    with pytest.raises(InvalidInput) as err:
        compile_expression(text)
    assert words in str(err.value) and "\n" not in str(err.value)
    assert "sqlglot" not in str(err.value) and "<class" not in str(err.value)  # the parser's own words stay inside


def test_every_column_is_an_expression_of_its_own():
    """No catalog column is taken for another language's habit (a digit, `_`, a digit)."""
    for name in feature_columns():
        assert compile_expression(name).inputs == (name,)


def test_text_in_quotes_is_never_taken_for_another_language():
    assert compile_expression("if(has_family, 'a // b ** [0] @ 1_000 if x else y', 'no') = 'no'").kind == BOOLEAN


def test_the_sql_holds_only_checked_names_numbers_and_quoted_text():
    c = compile_expression("monthly_fee / failed_payments_90d")
    assert "NULLIF(" in c.sql  # division by zero gives null, not an error
    c = compile_expression("if(has_family, 'it''s', 'no')")
    assert "'it''s'" in c.sql
    c = compile_expression("log1p(watch_hours_30d)")
    assert "> -1 THEN LN(" in c.sql  # null where the logarithm is undefined


def test_declaration_checks():
    ok = Derived("watch_trend", "watch_hours_30d", "delta", 1)
    assert derived.check(ok, [], months_stored=2) is ok
    assert ok.window == 1 and ok.dtype == "float"
    assert Derived("n", "failed_payments_90d > 0", "count", 3).dtype == "int"
    assert Derived("n", "failed_payments_90d > 0").dtype == "bool"
    with pytest.raises(InvalidInput, match="the store holds 1"):
        derived.check(ok, [], months_stored=1)
    with pytest.raises(InvalidInput, match="exists already"):
        derived.check(ok, [ok], months_stored=2)
    with pytest.raises(InvalidInput, match="already a column"):
        derived.check(Derived("watch_hours_30d", "1 + 1"), [])
    with pytest.raises(InvalidInput, match="lowercase"):
        derived.check(Derived("Bad Name", "1 + 1"), [])
    with pytest.raises(InvalidInput, match="'order' is a word SQL reserves"):  # its column could not be made
        derived.check(Derived("order", "monthly_fee * 2"), [])
    for constant in ("1", "coalesce(null, 2) * 3", "true", "'a'"):  # nothing a user's snapshot holds
        with pytest.raises(InvalidInput, match="reads no column"):
            derived.check(Derived("same_for_all", constant), [])
    with pytest.raises(InvalidInput, match="reads no column"):
        derived.check(Derived("same_trend", "2 > 1", "count", 2), [], months_stored=3)
    with pytest.raises(InvalidInput, match="1 or more"):
        derived.check(Derived("x_back", "watch_hours_30d", "delta", 0), [])
    assert set(derived.NULL_WHEN) == set(derived.AGGS)  # every aggregation says when it is null
    # the windows never look ahead for what the language can declare
    for agg in derived.AGGS:
        of = "failed_payments_90d > 0" if agg in derived.CONDITION_AGGS else "watch_hours_30d"
        assert "FOLLOWING" not in Derived("f", of, agg, 3).select_sql("_in_0")


def test_declarations_round_trip(tmp_path):
    features = [Derived("a_ratio", "monthly_fee / 2"), Derived("b_trend", "watch_hours_30d", "mean", 3, "three months")]
    derived.write(tmp_path, features)
    assert derived.read(tmp_path) == features
    assert "of: watch_hours_30d" in derived.declarations_path(tmp_path).read_text()
    derived.write(tmp_path, [])
    assert derived.read(tmp_path) == [] and not derived.declarations_path(tmp_path).exists()


def test_one_checked_tree_written_in_each_dialect():
    """The lake profile runs the same expression in Spark SQL: the same tree, each dialect's casts and
    quoting (Spark escapes a quote with a backslash, where PostgreSQL's doubled quote would join two
    literals), so a text value cannot end its literal early in either."""
    from streamflow.core.catalog import Column

    cols = {"note": Column("note", "str", "free text", nullable=True), "fee": Column("fee", "float", "a fee")}
    text = "note == 'it''s' and fee / 2 > 1"
    pg = compile_expression(text, cols, dialect="postgres").sql
    spark = compile_expression(text, cols, dialect="spark").sql
    assert "'it''s'" in pg and "DOUBLE PRECISION" in pg
    assert "'it\\'s'" in spark and "DOUBLE PRECISION" not in spark and "CAST(fee AS DOUBLE)" in spark
    assert pg.replace("DOUBLE PRECISION", "DOUBLE").replace("'it''s'", "'it\\'s'") == spark
    assert "'it\\'s'" in compile_expression("if(has_family, 'it''s', 'no')", dialect="spark").sql
    month = derived_sql.select([Derived("d", "watch_hours_30d", "delta", 1)], dialect="spark", params={
        "lo": "2024-01-31", "hi": "2024-02-29", "months": ["2024-02-29"]})  # fmt: skip
    assert "%(" not in month and "DATE '2024-01-31'" in month and "as_of IN (DATE '2024-02-29')" in month
    with pytest.raises(ValueError):  # only a date reaches a Spark query's text
        derived_sql.select([Derived("d", "watch_hours_30d", "delta", 1)], dialect="spark", params={
            "lo": "2024-01-31' OR 1=1 --", "hi": "2024-02-29", "months": []})  # fmt: skip
