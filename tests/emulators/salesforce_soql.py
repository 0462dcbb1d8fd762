"""A small SOQL engine for the Salesforce emulator: tokenize, parse, bind, evaluate.

Supported: ``SELECT f1, f2, Parent.Field | COUNT() FROM Object [WHERE ...] [ORDER BY f [ASC|DESC]
[NULLS FIRST|LAST], ...] [LIMIT n] [OFFSET n]``. WHERE takes AND / OR / NOT and parentheses
(mixing AND and OR at one level without parentheses is rejected, as in SOQL), ``= != <> < <= >
>=``, ``[NOT] IN (...)``, ``LIKE``, ``INCLUDES`` / ``EXCLUDES`` (multi-select picklists), ``null``,
``true`` / ``false``, numbers, quoted strings, date (``2025-01-01``) and datetime
(``2025-01-01T00:00:00Z`` / ``+hh:mm``) literals. Relationship paths (``Account.Industry``,
``Who.Type``) work in SELECT, WHERE and ORDER BY.

Not supported (MALFORMED_QUERY): sub-queries and semi-joins, aggregates other than COUNT(),
GROUP BY / HAVING, TYPEOF, FIELDS(), date functions and relative date literals (TODAY,
LAST_N_DAYS:n), FOR UPDATE / VIEW, WITH, USING SCOPE.

Errors raise `SoqlError(code, message)`, where code is MALFORMED_QUERY, INVALID_FIELD,
INVALID_TYPE or INVALID_QUERY_FILTER_OPERATOR, with Salesforce-style messages that point at
row and column.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .salesforce_schema import (
    ID_TYPES,
    NUMBER_TYPES,
    STRING_TYPES,
    FieldDef,
    ObjectDef,
    lookup_object,
    parse_datetime,
    to18,
    to_json_value,
)


class SoqlError(Exception):
    """A query Salesforce would reject; `code` is the REST errorCode."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


# --- Tokens --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Token:
    kind: str  # ident, string, number, date, datetime, op, lparen, rparen, comma, eof
    text: str
    pos: int
    value: Any = None


_DATETIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,3})?(?:Z|[+-]\d{2}:?\d{2})")
_DATETIME_NO_ZONE = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,3})?")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}(?![\dT])")
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?![\w.])")
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*")
_OPERATORS = ("<=", ">=", "!=", "<>", "=", "<", ">")
_STRING_ESCAPES = {
    "n": "\n",
    "r": "\r",
    "t": "\t",
    "b": "\b",
    "f": "\f",
    "'": "'",
    '"': '"',
    "\\": "\\",
}


def _position(text: str, pos: int) -> tuple[int, int]:
    row = text.count("\n", 0, pos) + 1
    column = pos - (text.rfind("\n", 0, pos) + 1) + 1
    return row, column


def _pointed(text: str, pos: int, message: str) -> str:
    row, column = _position(text, pos)
    line = text.splitlines()[row - 1] if text.splitlines() else text
    return f"\n{line}\n{' ' * (column - 1)}^\nERROR at Row:{row}:Column:{column}\n{message}"


def tokenize(text: str) -> list[Token]:
    tokens: list[Token] = []
    i = 0
    while i < len(text):
        char = text[i]
        if char.isspace():
            i += 1
            continue
        if char == "'":
            j = i + 1
            chars: list[str] = []
            while True:
                if j >= len(text):
                    raise SoqlError(
                        "MALFORMED_QUERY", _pointed(text, i, "unterminated string literal")
                    )
                if text[j] == "\\":
                    if j + 1 >= len(text):
                        raise SoqlError("MALFORMED_QUERY", _pointed(text, j, "invalid escape"))
                    escaped = text[j + 1]
                    if escaped in ("%", "_"):  # LIKE escapes keep their backslash
                        chars.append("\\" + escaped)
                    elif escaped in _STRING_ESCAPES:
                        chars.append(_STRING_ESCAPES[escaped])
                    else:
                        raise SoqlError(
                            "MALFORMED_QUERY",
                            _pointed(text, j, f"Invalid string literal '\\{escaped}'"),
                        )
                    j += 2
                    continue
                if text[j] == "'":
                    break
                chars.append(text[j])
                j += 1
            tokens.append(Token("string", text[i : j + 1], i, "".join(chars)))
            i = j + 1
            continue
        if char in "(),":
            kind = {"(": "lparen", ")": "rparen", ",": "comma"}[char]
            tokens.append(Token(kind, char, i))
            i += 1
            continue
        matched_op = next((op for op in _OPERATORS if text.startswith(op, i)), None)
        if matched_op is not None:
            tokens.append(Token("op", matched_op, i))
            i += len(matched_op)
            continue
        if char.isdigit() or (char == "-" and i + 1 < len(text) and text[i + 1].isdigit()):
            datetime_match = _DATETIME.match(text, i)
            if datetime_match:
                literal = datetime_match.group(0)
                tokens.append(Token("datetime", literal, i, parse_datetime(literal)))
                i = datetime_match.end()
                continue
            bare = _DATETIME_NO_ZONE.match(text, i)
            if bare:
                bad = bare.end()
                shown = text[bad] if bad < len(text) else "<EOF>"
                raise SoqlError(
                    "MALFORMED_QUERY",
                    _pointed(
                        text, bad, f"line 1:{bad} no viable alternative at character '{shown}'"
                    ),
                )
            date_match = _DATE.match(text, i)
            if date_match:
                literal = date_match.group(0)
                try:
                    value = dt.date.fromisoformat(literal)
                except ValueError as exc:
                    raise SoqlError(
                        "MALFORMED_QUERY", _pointed(text, i, f"invalid date {literal}")
                    ) from exc
                tokens.append(Token("date", literal, i, value))
                i = date_match.end()
                continue
            number_match = _NUMBER.match(text, i)
            if number_match:
                literal = number_match.group(0)
                number: int | float = float(literal) if "." in literal else int(literal)
                tokens.append(Token("number", literal, i, number))
                i = number_match.end()
                continue
        ident_match = _IDENT.match(text, i)
        if ident_match:
            tokens.append(Token("ident", ident_match.group(0), i))
            i = ident_match.end()
            continue
        raise SoqlError(
            "MALFORMED_QUERY",
            _pointed(text, i, f"line 1:{i} no viable alternative at character '{char}'"),
        )
    tokens.append(Token("eof", "", len(text)))
    return tokens


# --- Syntax tree ---------------------------------------------------------------------------


@dataclass(frozen=True)
class FieldPath:
    parts: tuple[str, ...]
    pos: int

    @property
    def text(self) -> str:
        return ".".join(self.parts)


@dataclass(frozen=True)
class Literal:
    kind: str  # string, number, boolean, null, date, datetime
    value: Any
    pos: int


@dataclass(frozen=True)
class Comparison:
    path: FieldPath
    op: str  # = != < <= > >= IN NOT IN LIKE INCLUDES EXCLUDES
    values: tuple[Literal, ...]


@dataclass(frozen=True)
class BoolOp:
    op: str  # AND, OR
    items: tuple[Expr, ...]


@dataclass(frozen=True)
class Not:
    item: Expr


Expr = Comparison | BoolOp | Not


@dataclass(frozen=True)
class OrderItem:
    path: FieldPath
    descending: bool
    nulls_last: bool


@dataclass(frozen=True)
class Query:
    text: str
    sobject: str
    sobject_pos: int
    fields: tuple[FieldPath, ...]
    count_only: bool
    where: Expr | None
    order_by: tuple[OrderItem, ...]
    limit: int | None
    offset: int | None


_UNSUPPORTED_CLAUSES = {"GROUP", "HAVING", "TYPEOF", "WITH", "USING", "FOR", "UPDATE"}
_RESERVED = {
    "SELECT", "FROM", "WHERE", "AND", "OR", "NOT", "IN", "LIKE", "INCLUDES", "EXCLUDES",
    "ORDER", "BY", "ASC", "DESC", "NULLS", "FIRST", "LAST", "LIMIT", "OFFSET", "NULL",
    "TRUE", "FALSE", *_UNSUPPORTED_CLAUSES,
}  # fmt: skip


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = tokenize(text)
        self.index = 0

    # token helpers
    def peek(self) -> Token:
        return self.tokens[self.index]

    def advance(self) -> Token:
        token = self.tokens[self.index]
        self.index += 1
        return token

    def is_keyword(self, *words: str) -> bool:
        token = self.peek()
        return token.kind == "ident" and token.text.upper() in words

    def unexpected(self, token: Token | None = None) -> SoqlError:
        token = token or self.peek()
        shown = token.text or "<EOF>"
        return SoqlError(
            "MALFORMED_QUERY", _pointed(self.text, token.pos, f"unexpected token: '{shown}'")
        )

    def expect_keyword(self, word: str) -> Token:
        if not self.is_keyword(word):
            raise self.unexpected()
        return self.advance()

    def expect(self, kind: str) -> Token:
        if self.peek().kind != kind:
            raise self.unexpected()
        return self.advance()

    # grammar
    def parse(self) -> Query:
        self.expect_keyword("SELECT")
        fields: list[FieldPath] = []
        count_only = False
        if self.is_keyword("COUNT") and self.tokens[self.index + 1].kind == "lparen":
            self.advance()
            self.expect("lparen")
            self.expect("rparen")
            count_only = True
        else:
            while True:
                fields.append(self.field_path())
                if self.peek().kind != "comma":
                    break
                self.advance()
        self.expect_keyword("FROM")
        sobject_token = self.expect("ident")
        if "." in sobject_token.text or sobject_token.text.upper() in _RESERVED:
            raise self.unexpected(sobject_token)
        where = None
        if self.is_keyword("WHERE"):
            self.advance()
            where = self.condition()
        order: list[OrderItem] = []
        if self.is_keyword("ORDER"):
            self.advance()
            self.expect_keyword("BY")
            while True:
                path = self.field_path()
                descending = False
                if self.is_keyword("ASC", "DESC"):
                    descending = self.advance().text.upper() == "DESC"
                nulls_last = False
                if self.is_keyword("NULLS"):
                    self.advance()
                    if not self.is_keyword("FIRST", "LAST"):
                        raise self.unexpected()
                    nulls_last = self.advance().text.upper() == "LAST"
                order.append(OrderItem(path, descending, nulls_last))
                if self.peek().kind != "comma":
                    break
                self.advance()
        limit = self.optional_int("LIMIT")
        offset = self.optional_int("OFFSET")
        token = self.peek()
        if token.kind != "eof":
            if token.kind == "ident" and token.text.upper() in _UNSUPPORTED_CLAUSES:
                raise SoqlError(
                    "MALFORMED_QUERY",
                    _pointed(
                        self.text,
                        token.pos,
                        f"{token.text.upper()} is not supported by the emulator",
                    ),
                )
            raise self.unexpected(token)
        return Query(
            self.text,
            sobject_token.text,
            sobject_token.pos,
            tuple(fields),
            count_only,
            where,
            tuple(order),
            limit,
            offset,
        )

    def optional_int(self, keyword: str) -> int | None:
        if not self.is_keyword(keyword):
            return None
        self.advance()
        token = self.expect("number")
        if not isinstance(token.value, int) or token.value < 0:
            raise self.unexpected(token)
        return token.value

    def field_path(self) -> FieldPath:
        token = self.peek()
        if token.kind != "ident" or token.text.upper() in _RESERVED:
            raise self.unexpected(token)
        if self.tokens[self.index + 1].kind == "lparen":
            raise SoqlError(
                "MALFORMED_QUERY",
                _pointed(
                    self.text,
                    token.pos,
                    f"function {token.text}() is not supported by the emulator",
                ),
            )
        self.advance()
        return FieldPath(tuple(token.text.split(".")), token.pos)

    def condition(self) -> Expr:
        items = [self.term()]
        connector: str | None = None
        while self.is_keyword("AND", "OR"):
            word = self.advance().text.upper()
            if connector is not None and word != connector:
                token = self.tokens[self.index - 1]
                raise SoqlError(
                    "MALFORMED_QUERY",
                    _pointed(self.text, token.pos, f"unexpected token: '{token.text}'"),
                )
            connector = word
            items.append(self.term())
        if connector is None:
            return items[0]
        return BoolOp(connector, tuple(items))

    def term(self) -> Expr:
        if self.is_keyword("NOT"):
            self.advance()
            return Not(self.term())
        if self.peek().kind == "lparen":
            self.advance()
            if self.is_keyword("SELECT"):
                raise SoqlError(
                    "MALFORMED_QUERY",
                    _pointed(
                        self.text, self.peek().pos, "sub-queries are not supported by the emulator"
                    ),
                )
            inner = self.condition()
            self.expect("rparen")
            return inner
        path = self.field_path()
        token = self.peek()
        if token.kind == "op":
            self.advance()
            op = "!=" if token.text == "<>" else token.text
            return Comparison(path, op, (self.literal(),))
        if self.is_keyword("NOT"):
            self.advance()
            self.expect_keyword("IN")
            return Comparison(path, "NOT IN", self.literal_list())
        if self.is_keyword("IN", "INCLUDES", "EXCLUDES"):
            word = self.advance().text.upper()
            return Comparison(path, word, self.literal_list())
        if self.is_keyword("LIKE"):
            self.advance()
            return Comparison(path, "LIKE", (self.literal(),))
        raise self.unexpected(token)

    def literal_list(self) -> tuple[Literal, ...]:
        self.expect("lparen")
        if self.is_keyword("SELECT"):
            raise SoqlError(
                "MALFORMED_QUERY",
                _pointed(
                    self.text,
                    self.peek().pos,
                    "semi-join sub-queries are not supported by the emulator",
                ),
            )
        values = [self.literal()]
        while self.peek().kind == "comma":
            self.advance()
            values.append(self.literal())
        self.expect("rparen")
        return tuple(values)

    def literal(self) -> Literal:
        token = self.advance()
        if token.kind in ("string", "number", "date", "datetime"):
            return Literal(token.kind, token.value, token.pos)
        if token.kind == "ident":
            word = token.text.upper()
            if word == "NULL":
                return Literal("null", None, token.pos)
            if word in ("TRUE", "FALSE"):
                return Literal("boolean", word == "TRUE", token.pos)
        raise self.unexpected(token)


def parse(text: str) -> Query:
    if not text or not text.strip():
        raise SoqlError("MALFORMED_QUERY", "SOQL statement cannot be empty")
    return _Parser(text).parse()


# --- Binding (names and types against the schema) -------------------------------------------

_POLYMORPHIC = ObjectDef(
    "Name",
    "",
    "Name",
    {
        "Id": FieldDef("Id", "id", createable=False, updateable=False),
        "Name": FieldDef("Name", "string", createable=False, updateable=False),
        "Type": FieldDef("Type", "string", createable=False, updateable=False),
    },
)


@dataclass(frozen=True)
class Column:
    """A bound field path: the reference fields to follow, then the final field."""

    parts: tuple[str, ...]  # canonical names: relationship names, then the field name
    references: tuple[FieldDef, ...]
    field: FieldDef
    polymorphic_type: bool = False

    @property
    def name(self) -> str:
        return ".".join(self.parts)


@dataclass(frozen=True)
class BoundComparison:
    column: Column
    op: str
    values: tuple[Any, ...]


@dataclass(frozen=True)
class BoundBoolOp:
    op: str
    items: tuple[BoundExpr, ...]


@dataclass(frozen=True)
class BoundNot:
    item: BoundExpr


BoundExpr = BoundComparison | BoundBoolOp | BoundNot


@dataclass(frozen=True)
class BoundOrder:
    column: Column
    descending: bool
    nulls_last: bool


@dataclass(frozen=True)
class BoundQuery:
    query: Query
    sobject: ObjectDef
    columns: tuple[Column, ...]
    where: BoundExpr | None
    order_by: tuple[BoundOrder, ...]

    @property
    def count_only(self) -> bool:
        return self.query.count_only


def _no_such_column(query: Query, path: FieldPath, name: str, sobject: str) -> SoqlError:
    message = (
        f"No such column '{name}' on entity '{sobject}'. If you are attempting to use a custom "
        "field, be sure to append the '__c' after the custom field name. Please reference your "
        "WSDL or the describe call for the appropriate names."
    )
    return SoqlError("INVALID_FIELD", _pointed(query.text, path.pos, message))


def _bind_path(
    query: Query, base: ObjectDef, objects: Mapping[str, ObjectDef], path: FieldPath
) -> Column:
    current = base
    references: list[FieldDef] = []
    canonical: list[str] = []
    polymorphic = False
    for step in path.parts[:-1]:
        reference = current.relationship(step) if current is not _POLYMORPHIC else None
        if reference is None:
            message = (
                f"Didn't understand relationship '{step}' in field path. If you are attempting to use "
                "a custom relationship, be sure to append the '__r' after the custom relationship "
                "name. Please reference your WSDL or the describe call for the appropriate names."
            )
            raise SoqlError("INVALID_FIELD", _pointed(query.text, path.pos, message))
        references.append(reference)
        canonical.append(reference.relationship_name or step)
        targets = reference.reference_to
        target = lookup_object(objects, targets[0]) if len(targets) == 1 else None
        polymorphic = target is None
        current = target if target is not None else _POLYMORPHIC
    final = current.readable_field(path.parts[-1])
    if final is None:
        raise _no_such_column(query, path, path.parts[-1], current.name)
    canonical.append(final.name)
    return Column(
        tuple(canonical),
        tuple(references),
        final,
        polymorphic_type=polymorphic and final.name == "Type",
    )


def _type_error(
    query: Query, column: Column, literal: Literal, expected: str, quoted: bool
) -> SoqlError:
    hint = "should be enclosed in quotes" if quoted else "should not be enclosed in quotes"
    message = f"value of filter criterion for field '{column.field.name}' must be of type {expected} and {hint}"
    return SoqlError("INVALID_FIELD", _pointed(query.text, literal.pos, message))


def _bind_literal(query: Query, column: Column, op: str, literal: Literal) -> Any:
    kind = column.field.type
    if literal.kind == "null":
        return None
    if column.polymorphic_type or kind in STRING_TYPES:
        if literal.kind != "string":
            raise _type_error(query, column, literal, "string", quoted=True)
        return literal.value
    if kind in ID_TYPES:
        if literal.kind != "string":
            raise _type_error(query, column, literal, "id", quoted=True)
        if op == "LIKE":
            return literal.value
        try:
            return to18(literal.value)
        except ValueError as exc:
            raise SoqlError(
                "INVALID_QUERY_FILTER_OPERATOR",
                _pointed(query.text, literal.pos, f"invalid ID field: {literal.value}"),
            ) from exc
    if kind == "boolean":
        if literal.kind != "boolean":
            raise _type_error(query, column, literal, "boolean", quoted=False)
        return literal.value
    if kind in NUMBER_TYPES:
        if literal.kind != "number":
            raise _type_error(
                query, column, literal, "double" if kind != "int" else "int", quoted=False
            )
        return literal.value
    if kind == "date":
        if literal.kind != "date":
            raise _type_error(query, column, literal, "date", quoted=False)
        return literal.value
    if kind == "datetime":
        if literal.kind != "datetime":
            raise _type_error(query, column, literal, "dateTime", quoted=False)
        return literal.value
    raise SoqlError("MALFORMED_QUERY", f"unsupported field type {kind}")


def _bind_expr(
    query: Query, base: ObjectDef, objects: Mapping[str, ObjectDef], expr: Expr
) -> BoundExpr:
    if isinstance(expr, BoolOp):
        return BoundBoolOp(
            expr.op, tuple(_bind_expr(query, base, objects, item) for item in expr.items)
        )
    if isinstance(expr, Not):
        return BoundNot(_bind_expr(query, base, objects, expr.item))
    column = _bind_path(query, base, objects, expr.path)
    kind = column.field.type
    if expr.op == "LIKE" and kind not in STRING_TYPES and kind not in ID_TYPES:
        raise SoqlError(
            "INVALID_FIELD",
            _pointed(query.text, expr.path.pos, f"invalid operator on {kind} field: LIKE"),
        )
    if expr.op in ("INCLUDES", "EXCLUDES") and kind != "multipicklist":
        raise SoqlError(
            "INVALID_QUERY_FILTER_OPERATOR",
            _pointed(
                query.text,
                expr.path.pos,
                f"{expr.op} operator is only valid on multipicklist fields",
            ),
        )
    if expr.op not in ("=", "!=", "IN", "NOT IN") and any(v.kind == "null" for v in expr.values):
        raise SoqlError(
            "MALFORMED_QUERY",
            _pointed(query.text, expr.values[0].pos, "null is only valid with = and !="),
        )
    values = tuple(_bind_literal(query, column, expr.op, literal) for literal in expr.values)
    return BoundComparison(column, expr.op, values)


def bind(query: Query, objects: Mapping[str, ObjectDef]) -> BoundQuery:
    base = lookup_object(objects, query.sobject)
    if base is None:
        message = (
            f"sObject type '{query.sobject}' is not supported. If you are attempting to use a "
            "custom object, be sure to append the '__c' after the entity name. Please reference "
            "your WSDL or the describe call for the appropriate names."
        )
        raise SoqlError("INVALID_TYPE", _pointed(query.text, query.sobject_pos, message))
    columns: list[Column] = []
    seen: set[str] = set()
    for path in query.fields:
        column = _bind_path(query, base, objects, path)
        if column.name.lower() in seen:
            raise SoqlError(
                "MALFORMED_QUERY",
                _pointed(query.text, path.pos, f"duplicate field selected: {column.name}"),
            )
        seen.add(column.name.lower())
        columns.append(column)
    where = _bind_expr(query, base, objects, query.where) if query.where is not None else None
    order = []
    for item in query.order_by:
        column = _bind_path(query, base, objects, item.path)
        if column.field.type in ("multipicklist", "textarea"):
            message = f"field '{column.field.name}' can not be sorted in a query call"
            raise SoqlError("INVALID_FIELD", _pointed(query.text, item.path.pos, message))
        order.append(BoundOrder(column, item.descending, item.nulls_last))
    return BoundQuery(query, base, tuple(columns), where, tuple(order))


def compile_query(text: str, objects: Mapping[str, ObjectDef]) -> BoundQuery:
    return bind(parse(text), objects)


# --- Evaluation ----------------------------------------------------------------------------

Row = tuple[str, Mapping[str, Any]]  # (sObject name, field values)
Lookup = Callable[[str], Row | None]


def column_value(column: Column, row: Row, lookup: Lookup) -> Any:
    sobject, values = row
    for reference in column.references:
        target_id = values.get(reference.name)
        if target_id is None:
            return None
        target = lookup(target_id)
        if target is None:
            return None
        sobject, values = target
    if column.polymorphic_type:
        return sobject
    return values.get(column.field.name)


def _fold(value: Any) -> Any:
    return value.casefold() if isinstance(value, str) else value


def _multi(value: Any) -> set[str]:
    return {part.casefold() for part in str(value or "").split(";") if part}


def _like(pattern: str) -> re.Pattern[str]:
    out = []
    i = 0
    while i < len(pattern):
        char = pattern[i]
        if char == "\\" and i + 1 < len(pattern):
            out.append(re.escape(pattern[i + 1]))
            i += 2
            continue
        out.append(".*" if char == "%" else "." if char == "_" else re.escape(char))
        i += 1
    return re.compile("".join(out), re.IGNORECASE | re.DOTALL)


def _compare(comparison: BoundComparison, actual: Any) -> bool:
    op = comparison.op
    values = comparison.values
    kind = comparison.column.field.type
    if kind == "multipicklist" and op in ("=", "!=", "INCLUDES", "EXCLUDES"):
        if op in ("=", "!="):
            expected = values[0]
            equal = (
                (actual is None)
                if expected is None
                else (actual is not None and _multi(actual) == _multi(expected))
            )
            return equal if op == "=" else not equal
        present = _multi(actual)
        hit = any(_multi(v) <= present and _multi(v) for v in values)
        return hit if op == "INCLUDES" else not hit
    if op in ("=", "!="):
        expected = values[0]
        equal = (
            actual is None
            if expected is None
            else actual is not None and _fold(actual) == _fold(expected)
        )
        return equal if op == "=" else not equal
    if op in ("IN", "NOT IN"):
        folded = {_fold(v) for v in values}
        hit = _fold(actual) in folded if actual is not None else None in folded
        return hit if op == "IN" else not hit
    if op == "LIKE":
        return actual is not None and _like(str(values[0])).fullmatch(str(actual)) is not None
    if actual is None or values[0] is None:
        return False
    left, right = _fold(actual), _fold(values[0])
    if op == "<":
        return bool(left < right)
    if op == "<=":
        return bool(left <= right)
    if op == ">":
        return bool(left > right)
    if op == ">=":
        return bool(left >= right)
    raise SoqlError("MALFORMED_QUERY", f"unknown operator {op}")


def matches(expr: BoundExpr | None, row: Row, lookup: Lookup) -> bool:
    if expr is None:
        return True
    if isinstance(expr, BoundBoolOp):
        results = (matches(item, row, lookup) for item in expr.items)
        return all(results) if expr.op == "AND" else any(results)
    if isinstance(expr, BoundNot):
        return not matches(expr.item, row, lookup)
    return _compare(expr, column_value(expr.column, row, lookup))


def _sort_key(value: Any) -> Any:
    if isinstance(value, str):
        return value.casefold()
    if isinstance(value, dt.datetime):
        return value.timestamp()
    return value


def execute(bound: BoundQuery, rows: Iterable[Row], lookup: Lookup) -> list[Row]:
    """Filter, order and slice rows (given in the org's stable insertion order)."""
    selected = [row for row in rows if matches(bound.where, row, lookup)]
    for order in reversed(bound.order_by):
        present = [r for r in selected if column_value(order.column, r, lookup) is not None]
        missing = [r for r in selected if column_value(order.column, r, lookup) is None]
        present.sort(
            key=lambda r, c=order.column: _sort_key(column_value(c, r, lookup)),  # type: ignore[misc]
            reverse=order.descending,
        )
        selected = present + missing if order.nulls_last else missing + present
    start = bound.query.offset or 0
    end = start + bound.query.limit if bound.query.limit is not None else None
    return selected[start:end]


def record_url(version: str, sobject: str, record_id: str) -> str:
    return f"/services/data/v{version}/sobjects/{sobject}/{record_id}"


def render_json(bound: BoundQuery, row: Row, lookup: Lookup, version: str) -> dict[str, Any]:
    """One REST query record: attributes, fields in SELECT order, parents as nested objects."""
    sobject, values = row
    out: dict[str, Any] = {
        "attributes": {"type": sobject, "url": record_url(version, sobject, values["Id"])}
    }
    for column in bound.columns:
        target = out
        current: Row | None = row
        for depth, reference in enumerate(column.references):
            key = column.parts[depth]
            parent_id = current[1].get(reference.name) if current is not None else None
            parent = lookup(parent_id) if parent_id is not None else None
            if parent is None:
                target.setdefault(key, None)
                current = None
                break
            nested = target.get(key)
            if not isinstance(nested, dict):
                nested = {
                    "attributes": {
                        "type": parent[0],
                        "url": record_url(version, parent[0], parent[1]["Id"]),
                    }
                }
                target[key] = nested
            target = nested
            current = parent
        else:
            value = (
                current[0]
                if column.polymorphic_type and current
                else (current[1].get(column.field.name) if current else None)
            )
            target[column.field.name] = to_json_value(value)
    return out


def render_flat(bound: BoundQuery, row: Row, lookup: Lookup) -> list[Any]:
    """One Bulk CSV row: a value per SELECT column (parents flattened as Account.Industry)."""
    return [column_value(column, row, lookup) for column in bound.columns]


@dataclass
class Cursor:
    """A server-side query cursor: the full result, handed out page by page."""

    locator: str
    sobject: str
    endpoint: str  # query or queryAll
    records: list[dict[str, Any]] = field(default_factory=list)
    total: int = 0
    page_size: int = 2000


def page(
    records: Sequence[dict[str, Any]], offset: int, size: int
) -> tuple[list[dict[str, Any]], int | None]:
    chunk = list(records[offset : offset + size])
    next_offset = offset + size
    return chunk, (next_offset if next_offset < len(records) else None)
