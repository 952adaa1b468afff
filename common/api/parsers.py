"""The API's JSON parser: valid JSON that the database cannot store is refused with a 400 up front, naming where.

JSON may carry values that neither database column type takes:

- a NUL character (`\\u0000`; Postgres `text` and `jsonb` refuse it) or a lone surrogate (`\\ud800`; not encodable
  as UTF-8), in a key or a string;
- a number that is not finite: Python's `json` reads `1e999` (or any literal beyond the float range) as infinity,
  and `NaN`, `Infinity`, `-Infinity` as themselves; Postgres `jsonb` refuses all of them.

Webhook bodies are stored as received, unknown fields included, so without this check such a body passed
validation and failed on insert with a 500 on Postgres only (found by tests/test_schemathesis.py). Laravel retries
a 5xx forever; a 400 tells it the body itself is wrong. Nesting deep enough to exhaust the parser's recursion is
refused the same way instead of escaping as a RecursionError.

A refusal is a 400 `parse_error` whose `fields` names the dotted path of the offending value
(`bookings.1.current_battery_level`, `body` for the top level), the same path validation errors use.
"""

import codecs
import json
import math
from typing import Any

from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser, get_encoding

# A node of the walk's path: (parent node, key or index); the root is None. Parents are shared, so each value
# costs one tuple however deep it sits, and the dotted path is only built for the one value refused.
_Node = tuple[Any, str] | None


class UnstorableJSON(ParseError):
    """Parsed JSON holding a value no column can store; `field` is its dotted path (the error body's `fields`)."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"JSON parse error - {field}: {problem}")
        self.field = field


def _dotted(node: _Node) -> str:
    parts = []
    while node is not None:
        node, part = node
        parts.append(part)
    return ".".join(reversed(parts)) or "body"


def _text_problem(text: str) -> str | None:
    if "\x00" in text:
        return "must not contain NUL (\\u0000) characters"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "must not contain unpaired surrogates (e.g. \\ud800)"
    return None


def unstorable_value(data: Any) -> tuple[str, str] | None:
    """Where and why some key, string or number in parsed JSON cannot be stored; None when all can.

    Iterative, so there is no depth limit. A dict's keys are all checked before any of its values is visited, so
    every key in a reported path is itself printable.
    """
    pending: list[tuple[Any, _Node]] = [(data, None)]
    while pending:
        item, node = pending.pop()
        if isinstance(item, dict):
            for key in item:
                problem = _text_problem(key)
                if problem:
                    return _dotted(node), f"keys {problem}."
            pending.extend((value, (node, key)) for key, value in item.items())
        elif isinstance(item, list):
            pending.extend((value, (node, str(index))) for index, value in enumerate(item))
        elif isinstance(item, str):
            problem = _text_problem(item)
            if problem:
                return _dotted(node), f"strings {problem}."
        elif isinstance(item, float) and not math.isfinite(item):
            return _dotted(node), "must be a finite number (not NaN, Infinity, or beyond about ±1.8e308)."
    return None


class StrictJSONParser(JSONParser):
    def parse(self, stream, media_type=None, parser_context=None) -> Any:
        # DRF's own check of the Content-Type charset: text encodings only, so no bz2_codec body expands unchecked.
        encoding = get_encoding(parser_context or {})
        try:
            # NaN and Infinity literals are read as floats here (rather than refused by DRF's strict_constant, whose
            # message cannot say where they were) so that the walk below names their path, as it does for 1e999.
            return self._checked(json.load(codecs.getreader(encoding)(stream), parse_constant=float))
        except RecursionError:
            raise ParseError("JSON parse error - the body is nested too deeply.") from None
        except ValueError as exc:
            raise ParseError(f"JSON parse error - {exc}") from None

    @staticmethod
    def _checked(data: Any) -> Any:
        found = unstorable_value(data)
        if found:
            raise UnstorableJSON(*found)
        return data
