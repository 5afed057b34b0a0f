"""The derived features' expression language: small, checked, compiled to SQL, never run as Python.

An expression reads one instant's values of the catalog's columns, named bare (`monthly_fee`):

    numbers     1  2.5  -x  a + b  a - b  a * b  a / b  a % b
    comparisons = == != <> < <= > >=  (numbers with numbers, text with text, booleans for = and !=)
                x between 1 and 5   contract_type in ('One year', 'Two year')   x is null   x is not null
    logic       and  or  not  true  false
    functions   coalesce(a, b, ...)  if(cond, then, else)  clip(x, lo, hi)  log1p(x)  ln(x)  abs(x)
                least(a, b, ...)  greatest(a, b, ...)

`sqlglot` parses the text (a kept parser, not a hand-written one); this module then walks the tree
and accepts only the nodes above, checking each column against the catalog and each operand's
kind, and writes the SQL itself from the checked tree, so nothing the user typed reaches the
database but column names the catalog declares, numbers and quoted text. Anything else -- a
function outside the list (`__import__`, `pg_sleep`), a qualified name or attribute (`os.system`,
`x.__class__`), a subquery, a second statement, a lambda -- is refused in one line.

Results, stated and tested (`tests/unit/test_expr.py`):
- null in, null out (SQL's rule), except `coalesce`, `if`'s untaken branch, `is null`, and `and`/`or`
  where the other side decides (`false and null` is false); a literal `null` where it would make the
  value null for every row (`x > null`, `x + null`) is refused: `x is null` tests for null;
- `a / b` and `a % b` are null when `b` is 0 (never an error, never infinity); `a % b` has the sign
  of `a` (SQL's rule, where Python's follows `b`): `-7 % 3` is -1;
- a value past a double's range (about 1.8e308) is refused in one line on PostgreSQL (Spark gives
  infinity);
- `log1p(x)` is null for x <= -1, `ln(x)` for x <= 0;
- every number is a double (an integer column divided gives a fraction); a comparison is a boolean.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from streamflow.core.catalog import TABLES, Column
from streamflow.core.errors import InvalidInput

NUMBER, BOOLEAN, TEXT, NULL = "number", "boolean", "text", "null"
KIND_OF_COLUMN = {"int": NUMBER, "float": NUMBER, "bool": BOOLEAN, "str": TEXT, "category": TEXT}
FUNCTIONS = ("coalesce", "if", "clip", "log1p", "ln", "abs", "least", "greatest")
DOUBLE = {"postgres": "DOUBLE PRECISION", "spark": "DOUBLE"}
MAX_LENGTH = 500


@dataclass(frozen=True)
class Compiled:
    """A checked expression: its SQL (over bare column names), its result kind, its input columns."""

    text: str
    sql: str
    kind: str  # number | boolean | text
    inputs: tuple[str, ...]


def feature_columns() -> dict[str, Column]:
    """The columns an expression may read: every feature column of the catalog's feature tables
    (never the label: a feature computed from the target would be the answer)."""
    return {c.name: c for t in TABLES if t.role == "features" for c in t.features}


class _Checker:
    def __init__(self, columns: dict[str, Column], dialect: str, text: str = ""):
        self.columns = columns
        self.text = text
        self.dialect = dialect
        self.inputs: list[str] = []

    def refuse(self, node, why: str):
        raise InvalidInput(f"{why} (in {self.quoted(node)!r})" if node is not None else why)

    def quoted(self, node) -> str:
        """The part of the user's text a refusal is about: the node as sqlglot writes it back when the
        text holds it so, else the whole text (`1_000` reads back as `1 AS _000`, never typed)."""
        shown = node.sql()
        return shown if " ".join(shown.lower().split()) in " ".join(self.text.lower().split()) else self.text

    def kind_of(self, node) -> tuple[str, str]:
        """(sql, kind) of a node, or InvalidInput."""
        from sqlglot import exp

        t = type(node)
        if t is exp.Paren:
            sql, kind = self.kind_of(node.this)
            return f"({sql})", kind
        if t is exp.Column:
            if node.table or node.args.get("db") or node.args.get("catalog"):
                self.refuse(node, "write a column by its name alone: no attribute or qualified name")
            name = node.name
            col = self.columns.get(name)
            if col is None:
                if node.this.args.get("quoted"):  # "Month-to-month": a name in SQL, where Python has text
                    raise InvalidInput(f"text is written in single quotes: '{name}' (\"{name}\" would name a column)")
                near = ", ".join(sorted(self.columns))
                raise InvalidInput(f"unknown column {name!r}; an expression can read: {near}")
            kind = KIND_OF_COLUMN.get(col.kind)
            if kind is None:
                self.refuse(node, f"{name} is a {col.kind} column: not usable in an expression")
            if name not in self.inputs:
                self.inputs.append(name)
            return name, kind
        if t is exp.Literal:
            if node.is_string:
                # sqlglot writes the text in the dialect's own quoting (PostgreSQL doubles a quote,
                # Spark SQL escapes it with a backslash, where '' would join two literals)
                return exp.Literal.string(node.this).sql(dialect=self.dialect), TEXT
            try:
                float(node.this)
            except ValueError:
                self.refuse(node, "not a number")
            return str(node.this), NUMBER
        if t is exp.Boolean:
            return ("TRUE" if node.this else "FALSE"), BOOLEAN
        if t is exp.Null:
            return "NULL", NULL
        if t is exp.Neg:
            sql, _ = self.expect(node.this, NUMBER)
            return f"(-{sql})", NUMBER
        if t in (exp.Add, exp.Sub, exp.Mul):
            op = {exp.Add: "+", exp.Sub: "-", exp.Mul: "*"}[t]
            a, _ = self.expect(node.this, NUMBER)
            b, _ = self.expect(node.expression, NUMBER)
            return f"({self.double(a)} {op} {b})", NUMBER
        if t in (exp.Div, exp.Mod):
            a, _ = self.expect(node.this, NUMBER)
            b, _ = self.expect(node.expression, NUMBER)
            a, b = self.double(a), f"NULLIF({self.double(b)}, 0)"  # null, not an error, when the divisor is 0
            if t is exp.Div:
                return f"({a} / {b})", NUMBER
            if self.dialect == "postgres":  # PostgreSQL has no % of doubles: MOD of numerics, back to a double
                return self.double(f"MOD(CAST({a} AS NUMERIC), CAST({b} AS NUMERIC))"), NUMBER
            return f"({a} % {b})", NUMBER
        if t in (exp.EQ, exp.NEQ, exp.GT, exp.GTE, exp.LT, exp.LTE):
            op = {exp.EQ: "=", exp.NEQ: "<>", exp.GT: ">", exp.GTE: ">=", exp.LT: "<", exp.LTE: "<="}[t]
            (a, ka), (b, kb) = self.kind_of(node.this), self.kind_of(node.expression)
            if NULL in (ka, kb):
                self.refuse(node, "a comparison with null is null for every row (write `x is null`)")
            kind = self.same(node, ka, kb)
            if kind == BOOLEAN and op not in ("=", "<>"):
                self.refuse(node, "booleans compare only with = or !=")
            self.check_category(node.this, node.expression)
            self.check_category(node.expression, node.this)
            return f"({a} {op} {b})", BOOLEAN
        if t in (exp.And, exp.Or):
            a, _ = self.expect(node.this, BOOLEAN, strict=False)
            b, _ = self.expect(node.expression, BOOLEAN, strict=False)
            return f"({a} {'AND' if t is exp.And else 'OR'} {b})", BOOLEAN
        if t is exp.Not:
            a, _ = self.expect(node.this, BOOLEAN)
            return f"(NOT {a})", BOOLEAN
        if t is exp.Is:
            if not isinstance(node.expression, exp.Null):
                self.refuse(node, "only `is null` and `is not null`")
            a, _ = self.kind_of(node.this)
            return f"({a} IS {'NOT ' if node.args.get('negate') else ''}NULL)", BOOLEAN
        if t is exp.Between:
            a, _ = self.expect(node.this, NUMBER)
            lo, _ = self.expect(node.args["low"], NUMBER, strict=False)  # null or false: not always null
            hi, _ = self.expect(node.args["high"], NUMBER, strict=False)
            return f"({a} BETWEEN {lo} AND {hi})", BOOLEAN
        if t is exp.In:
            if node.args.get("query") or node.args.get("unnest") or node.args.get("field"):
                self.refuse(node, "`in` takes a list of values")
            a, ka = self.kind_of(node.this)
            items = []
            for item in node.expressions:
                if not isinstance(item, exp.Literal | exp.Boolean | exp.Neg):
                    self.refuse(item, "`in` takes a list of values")
                sql, k = self.kind_of(item)
                self.same(node, ka, k)
                self.check_category(node.this, item)
                items.append(sql)
            return f"({a} IN ({', '.join(items)}))", BOOLEAN
        return self.function(node)

    def function(self, node) -> tuple[str, str]:
        from sqlglot import exp

        t = type(node)
        if t is exp.Coalesce:
            parts = [self.kind_of(a) for a in [node.this, *node.expressions]]
            kind = NULL
            for _, k in parts:
                kind = self.same(node, kind, k)
            return f"COALESCE({', '.join(self.cast_numbers(parts, kind))})", kind
        if t is exp.If:
            if node.args.get("false") is None:
                self.refuse(node, "if(condition, then, else) takes three arguments")
            c, _ = self.expect(node.this, BOOLEAN, strict=False)
            parts = [self.kind_of(node.args["true"]), self.kind_of(node.args["false"])]
            kind = self.same(node, parts[0][1], parts[1][1])
            a, b = self.cast_numbers(parts, kind)
            return f"(CASE WHEN {c} THEN {a} ELSE {b} END)", kind
        if t in (exp.Greatest, exp.Least):
            args = [self.expect(a, NUMBER, strict=False)[0] for a in [node.this, *node.expressions]]
            return f"{'GREATEST' if t is exp.Greatest else 'LEAST'}({', '.join(map(self.double, args))})", NUMBER
        if t is exp.Abs:
            return f"ABS({self.double(self.expect(node.this, NUMBER)[0])})", NUMBER
        if t is exp.Ln:
            a = self.double(self.expect(node.this, NUMBER)[0])
            return f"(CASE WHEN {a} > 0 THEN LN({a}) END)", NUMBER
        if t is exp.Anonymous:
            name = str(node.this).lower()
            args = node.expressions
            if name == "log1p" and len(args) == 1:
                a = self.double(self.expect(args[0], NUMBER)[0])
                return f"(CASE WHEN {a} > -1 THEN LN(1 + {a}) END)", NUMBER
            if name == "clip" and len(args) == 3:
                x, lo, hi = (self.double(self.expect(a, NUMBER, strict=i == 0)[0]) for i, a in enumerate(args))
                return f"LEAST(GREATEST({x}, {lo}), {hi})", NUMBER
            if name in FUNCTIONS:
                self.refuse(node, f"{name} takes {'one argument' if name == 'log1p' else 'three arguments'}")
            raise InvalidInput(f"unknown function {name!r}; functions: {', '.join(FUNCTIONS)}")
        if t is exp.Dot:
            self.refuse(node, "write a column by its name alone: no attribute or qualified name")
        what = t.__name__.lower()
        self.refuse(node, f"{what} is not part of the expression language")
        raise AssertionError  # unreachable

    def expect(self, node, kind: str, strict: bool = True) -> tuple[str, str]:
        """A `kind` operand; a bare null only where it can change nothing but its own place
        (`strict` False: and/or, if's condition, least/greatest, clip's bounds), since an operator
        given null gives null for every row."""
        sql, k = self.kind_of(node)
        if k == NULL and strict:
            self.refuse(node, "null here makes the result null for every row (write `x is null` to test for null)")
        if k not in (kind, NULL):
            self.refuse(node, f"expected a {kind}, got a {k}")
        return sql, kind

    def same(self, node, a: str, b: str) -> str:
        if a == NULL:
            return b
        if b in (NULL, a):
            return a
        self.refuse(node, f"a {a} and a {b} do not mix")
        raise AssertionError  # unreachable

    def check_category(self, side, other) -> None:
        """`contract_type = 'Monthly'` is refused where the catalog lists the allowed values."""
        from sqlglot import exp

        if isinstance(side, exp.Column) and isinstance(other, exp.Literal) and other.is_string:
            col = self.columns.get(side.name)
            if col is not None and col.allowed and other.this not in col.allowed:
                raise InvalidInput(
                    f"{col.name} has no value {other.this!r}; its values: {', '.join(map(repr, col.allowed))}"
                )

    def double(self, sql: str) -> str:
        return f"CAST({sql} AS {DOUBLE[self.dialect]})"

    def cast_numbers(self, parts: list[tuple[str, str]], kind: str) -> list[str]:
        return [self.double(s) if kind == NUMBER and k == NUMBER else s for s, k in parts]


# habits of Python (and other languages) the grammar would misread or refuse in its own words, said
# in the language's: (pattern outside quoted text, what to write instead)
_HABITS = (
    (re.compile(r"\*\*"), "no power operator `**`: numbers take + - * / % and the functions"),
    (re.compile(r"//"), "no `//`: a / b divides (a decimal number)"),
    (re.compile(r"\d_\d"), "write a number without `_` (1000, not 1_000)"),
    (re.compile(r"\b0[xob][0-9a-f]", re.IGNORECASE), "write a number in decimal (16, not 0x10)"),
    (re.compile(r"\[|\]"), "no indexing `[...]`: an expression reads whole values"),
    (re.compile(r"\bif\b(?!\s*\().*\belse\b", re.IGNORECASE), "write a condition as if(cond, then, else)"),
    (re.compile(r"[@&|^~]"), "no bitwise or matrix operator: numbers take + - * / %, conditions and/or/not"),
)
_QUOTED = re.compile(r"'(?:[^']|'')*'")


def _refuse_other_languages(text: str) -> None:
    bare = _QUOTED.sub("''", text)
    for pattern, advice in _HABITS:
        if pattern.search(bare):
            raise InvalidInput(f"{advice} (in {text!r})")


def _where(exc) -> str:
    """Where the parser stopped, in words (its own message names its classes)."""
    errors = getattr(exc, "errors", None) or [{}]
    col = errors[0].get("col")
    return f"cannot be read past character {col}" if col else "cannot be read"


def compile_expression(text: str, columns: dict[str, Column] | None = None, dialect: str = "postgres") -> Compiled:
    """Parse, check and compile `text` (see the module docstring); InvalidInput in one line otherwise."""
    import sqlglot
    from sqlglot.errors import ParseError, TokenError

    text = (text or "").strip()
    if not text:
        raise InvalidInput("the expression is empty")
    if len(text) > MAX_LENGTH:
        raise InvalidInput(f"the expression is longer than {MAX_LENGTH} characters")
    if ";" in text:
        raise InvalidInput("one expression, no `;`")
    _refuse_other_languages(text)
    try:
        tree = sqlglot.parse_one(text.replace("==", "="), dialect="postgres")
    except (ParseError, TokenError) as exc:
        raise InvalidInput(f"not an expression: {text!r} ({_where(exc)})") from None
    checker = _Checker(columns if columns is not None else feature_columns(), dialect, text)
    sql, kind = checker.kind_of(tree)
    if kind == NULL:
        raise InvalidInput("the expression is always null")
    if kind == NUMBER:
        sql = checker.double(sql)
    return Compiled(text=text, sql=sql, kind=kind, inputs=tuple(checker.inputs))
