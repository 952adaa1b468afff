"""Hand-written SQL for the hottest statements: its parameter lists, and model instances from its rows, converted as
the ORM converts them.

Why: the hottest statements of a prediction are written once as SQL (`bookings.services.vehicle_lock`,
`learning.selectors.user_patterns_for`, the reads of `bookings.selectors`), because the ORM compiled them again on
every call (docs/performance.md).
Their rows still become model instances as a queryset's would: each column through the converters the ORM
applies (a datetime on SQLite, a JSON document), then `Model.from_db`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from datetime import datetime
from functools import cache, lru_cache
from typing import Any

from django.db import connection
from django.db.models import JSONField, Model
from psycopg.types.json import Json, Jsonb


@cache
def _converters(model: type[Model]) -> list[tuple[Any, list]]:
    """Each concrete column of `model` with the converters the ORM applies to what the database returns for it."""
    columns = [field.get_col(model._meta.db_table) for field in model._meta.concrete_fields]
    return [
        (column, connection.ops.get_db_converters(column) + column.target.get_db_converters(connection))
        for column in columns
    ]


def columns_of(model: type[Model], alias: str = "") -> str:
    """The SELECT list of `model`'s concrete columns, in the order `model_from_row` takes them."""
    qn = connection.ops.quote_name
    prefix = f"{alias}." if alias else ""
    return ", ".join(f"{prefix}{qn(f.column)}" for f in model._meta.concrete_fields)


def select_sql(model: type[Model], where: str, order: str = "") -> str:
    """SELECT `columns_of(model)` from its table WHERE `where` (ORDER BY `order`), for `instances`."""
    qn = connection.ops.quote_name
    tail = f" ORDER BY {order}" if order else ""
    return f"SELECT {columns_of(model)} FROM {qn(model._meta.db_table)} WHERE {where}{tail}"


def placeholders(count: int, width: int = 1) -> str:
    """`count` parameters for an IN list, each a row of `width` (`%s, %s` or `(%s, %s), (%s, %s)`)."""
    one = "%s" if width == 1 else f"({', '.join(['%s'] * width)})"
    return ", ".join([one] * count)


def parameter_rows(names: Sequence[str], count: int) -> str:
    """A derived table of `count` rows of parameters, its columns named `names`, for `UPDATE ... FROM (...) AS x`.

    `SELECT ... UNION ALL SELECT ...` rather than `VALUES`, whose columns SQLite cannot name."""
    return " UNION ALL ".join(["SELECT " + ", ".join(f"%s AS {name}" for name in names)] * count)


@lru_cache(maxsize=256)
def keyed_sql(model: type[Model], key: str, count: int, *, lock: bool = False, select: tuple[str, ...] = ()) -> str:
    """SELECT the columns `select` (every column, `columns_of(model)`, when empty) of `model`'s rows whose column
    `key` is one of `count` parameters, in `key` order; with `lock`, FOR UPDATE where the backend locks rows (SQLite's
    one writer needs no row locks). Built once per count: rows locked in key order cannot deadlock with others doing
    the same.
    """
    qn = connection.ops.quote_name
    columns = ", ".join(qn(column) for column in select) if select else columns_of(model)
    tail = " FOR UPDATE" if lock and connection.features.has_select_for_update else ""
    return (
        f"SELECT {columns} FROM {qn(model._meta.db_table)} WHERE {qn(key)} IN ({placeholders(count)}) "
        f"ORDER BY {qn(key)}{tail}"
    )


def model_from_row(model: type[Model], values: Sequence[Any]) -> Model:
    """An instance of `model` from its concrete columns (`columns_of`) as a cursor returned them."""
    converted = []
    for (column, converters), value in zip(_converters(model), values, strict=True):
        for convert in converters:
            value = convert(value, column, connection)
        converted.append(value)
    return model.from_db(connection.alias, None, converted)


def db_value(model: type[Model], field: str, value: Any) -> Any:
    """`value` as a parameter for `model`'s `field`, as the ORM prepares it (an aware datetime in UTC on SQLite)."""
    return model._meta.get_field(field).get_db_prep_value(value, connection)


def instances(model: type[Model], sql: str, params: Sequence[Any]) -> list[Model]:
    """The rows of a SELECT of `columns_of(model)` as instances of `model`."""
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return [model_from_row(model, row) for row in cursor.fetchall()]


def instance(model: type[Model], sql: str, params: Sequence[Any]) -> Model | None:
    """The first row of a SELECT of `columns_of(model)` as an instance of `model`, or None when there is none."""
    found = instances(model, sql, params)
    return found[0] if found else None


@cache
def _insert_fields(model: type[Model]) -> list[Any]:
    """The columns an INSERT of `model` writes: every concrete one but an auto-incremented key."""
    return [field for field in model._meta.concrete_fields if field is not model._meta.auto_field]


_RETURNING, _SKIPPING = "returning", "skipping"  # what an insert ends with: the new keys, or nothing for a held row


def _insert_tail(model: type[Model], tail: str) -> str:
    if tail == _SKIPPING:
        return "ON CONFLICT DO NOTHING"
    return f"RETURNING {connection.ops.quote_name(model._meta.pk.column)}"


@lru_cache(maxsize=256)
def _insert_sql(model: type[Model], count: int, tail: str = _RETURNING) -> str:
    """INSERT of `count` rows of `model` (RETURNING their keys, or skipping the rows a unique constraint already
    holds), built once per row count."""
    qn = connection.ops.quote_name
    fields = _insert_fields(model)
    columns = ", ".join(qn(field.column) for field in fields)
    return (
        f"INSERT INTO {qn(model._meta.db_table)} ({columns}) VALUES {placeholders(count, len(fields))} "
        f"{_insert_tail(model, tail)}"
    )


@cache
def _custom_json(model: type[Model]) -> bool:
    """Whether a JSON column of `model` has an encoder of its own, which the JSON document would bypass."""
    return any(isinstance(field, JSONField) and field.encoder is not None for field in _insert_fields(model))


@lru_cache(maxsize=32)
def _insert_json_sql(model: type[Model], tail: str = _RETURNING) -> str:
    """INSERT of any number of rows of `model` from one JSON array of objects keyed by column (RETURNING their keys,
    or skipping the rows a unique constraint already holds).

    Postgres only (`json_populate_recordset` over the table's own row type): one parameter, whatever the row count.
    """
    qn = connection.ops.quote_name
    table = qn(model._meta.db_table)
    columns = ", ".join(qn(field.column) for field in _insert_fields(model))
    return (
        f"INSERT INTO {table} ({columns}) SELECT {columns} FROM json_populate_recordset(NULL::{table}, %s::json) "
        f"{_insert_tail(model, tail)}"
    )


def _insert_statements(model: type[Model], objs: list[Model], tail: str) -> list[tuple[str, list, list]] | None:
    """The statements (SQL, parameters, the objects they insert) that insert `objs`, values prepared as the ORM
    prepares them (`pre_save`, then `get_db_prep_save`); None when a value is an expression, which only the ORM
    compiles. An unsaved related object is an error, as in save() and bulk_create(), not a NULL key.

    On Postgres several rows go as one JSON parameter when every value has an exact JSON form; otherwise, or on
    SQLite, as `VALUES` lists built once per row count, in the backend's batches.
    """
    for obj in objs:
        obj._prepare_related_fields_for_save(operation_name="insert")
    fields = _insert_fields(model)
    values = [[field.get_db_prep_save(field.pre_save(obj, True), connection) for field in fields] for obj in objs]
    if any(hasattr(value, "as_sql") for row in values for value in row):
        return None
    as_json = connection.vendor == "postgresql" and len(objs) > 1 and not _custom_json(model)
    document = _as_json(fields, values) if as_json else None
    if document is not None:
        return [(_insert_json_sql(model, tail), [document], objs)]
    batch = max(connection.ops.bulk_batch_size(fields, objs), 1)
    return [
        (
            _insert_sql(model, len(objs[first : first + batch]), tail),
            [value for row in values[first : first + batch] for value in row],
            objs[first : first + batch],
        )
        for first in range(0, len(objs), batch)
    ]


def insert_missing(model: type[Model], objs: Sequence[Model]) -> None:
    """Insert those of `objs` that no unique constraint of `model` already holds, as `bulk_create(...,
    ignore_conflicts=True)` does on Postgres, with SQL built once (`_insert_statements`). No key comes back: read
    the rows afterwards.

    Why: a scored pick-up makes sure its calibration and score rows exist before it locks them, and the ORM
    compiled that insert (on Postgres with every column as an `UNNEST` array) on every pick-up (docs/performance.md).
    On SQLite only a unique conflict is skipped (`bulk_create` there says `INSERT OR IGNORE`, which also drops a row
    breaking NOT NULL or a check), as on Postgres.
    """
    objs = list(objs)
    if not objs:
        return
    statements = _insert_statements(model, objs, _SKIPPING)
    if statements is None:
        model.objects.bulk_create(objs, ignore_conflicts=True)
        return
    with connection.cursor() as cursor:
        for sql, params, _ in statements:
            cursor.execute(sql, params)


def _as_json(fields: list[Any], values: list[list[Any]]) -> str | None:
    """The rows as the JSON array `_insert_json_sql` reads, or None when a value has no exact JSON form."""
    columns = [field.column for field in fields]
    rows = []
    for row in values:
        document = {}
        for column, value in zip(columns, row, strict=True):
            if isinstance(value, datetime):
                value = value.isoformat()
            elif isinstance(value, float) and not math.isfinite(value):
                return None
            elif isinstance(value, Json | Jsonb):  # how a JSON column's document is passed
                if value.obj is None:  # JSON's null, which the document could not tell from SQL's NULL
                    return None
                value = value.obj
            elif value is not None and not isinstance(value, str | int | float):
                return None
            document[column] = value
        rows.append(document)
    try:
        return json.dumps(rows, allow_nan=False)
    except (TypeError, ValueError):
        return None


def insert(model: type[Model], objs: Sequence[Model]) -> list[Model]:
    """Insert `objs` (new instances of `model`) as `bulk_create` does, with SQL built once.

    Why: the ORM compiled the prediction insert on every event, and on Postgres sent each of its 27 columns as an
    array for `UNNEST`, which psycopg builds element by element in Python; a `VALUES` list instead has 27
    parameters a row, and psycopg parses a statement of more than 50 parameters again on every call
    (docs/performance.md). So on Postgres several rows go as one JSON parameter (`_insert_json_sql`), and one row,
    or rows on SQLite, as `VALUES` built once per row count. The values are prepared as the ORM prepares them
    (`pre_save`, then `get_db_prep_save`); the keys the database gave come back with `RETURNING` and are set on
    `objs`, which are returned. Where a backend cannot return them, each is saved; where a value is an expression,
    `bulk_create` inserts them.
    """
    objs = list(objs)
    if not objs:
        return objs
    if not connection.features.can_return_rows_from_bulk_insert:  # an old SQLite: one save each still sets the key
        for obj in objs:
            obj.save(force_insert=True)
        return objs
    statements = _insert_statements(model, objs, _RETURNING)
    if statements is None:
        return model.objects.bulk_create(objs)
    with connection.cursor() as cursor:
        for sql, params, chunk in statements:
            cursor.execute(sql, params)
            for obj, (key,) in zip(chunk, cursor.fetchall(), strict=True):
                obj.pk = key
                obj._state.adding, obj._state.db = False, connection.alias
    return objs
