"""The API's JSON parser: valid JSON that the database cannot store is refused with a 400 up front.

JSON may carry strings that neither database column type takes: a NUL character (`\\u0000`; Postgres `text` and
`jsonb` refuse it) or a lone surrogate (`\\ud800`; not encodable as UTF-8). Webhook bodies are stored as received,
unknown fields included, so without this check such a body passed validation and failed on insert with a 500 on
Postgres only (found by tests/test_schemathesis.py). Nesting deep enough to exhaust the parser's recursion is
refused the same way instead of escaping as a RecursionError.
"""

from typing import Any

from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser


def unstorable_text(data: Any) -> str | None:
    """Why some key or string in parsed JSON cannot be stored, or None when all can (iterative: no depth limit)."""
    pending = [data]
    while pending:
        item = pending.pop()
        if isinstance(item, dict):
            pending.extend(item.keys())
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
        elif isinstance(item, str):
            if "\x00" in item:
                return "strings must not contain NUL (\\u0000) characters."
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return "strings must not contain unpaired surrogates (e.g. \\ud800)."
    return None


class StrictJSONParser(JSONParser):
    def parse(self, stream, media_type=None, parser_context=None) -> Any:
        try:
            data = super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise ParseError("JSON parse error - the body is nested too deeply.") from None
        problem = unstorable_text(data)
        if problem:
            raise ParseError(f"JSON parse error - {problem}")
        return data
