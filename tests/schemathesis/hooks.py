"""Schemathesis hooks for the larder gateway.

Two request parts carry a contract that a JSON Schema cannot state, so generated values would
be answered with a correct error that the positive-data check counts as a failure. Each hook
changes only values that are already valid by the document, into values that stay valid and
meet that contract; invalid (negative) values are sent untouched.

- `Idempotency-Key` must be unique per logical request: a key reused with another body is
  answered 422 (idempotency-key-reused), by design, and keys are remembered for a day.
  Hypothesis draws the same short keys again and again, so each valid key gets a suffix unique
  to this call and this run.
- `page[after]` is an opaque cursor the gateway issued in `links.next` (base64url of a JSON
  array `[kind, value, id]`; the kind is `text` for `sort=id` and, on PostgreSQL, `jsonb` with
  JSON text for attribute sorts). A generated value in the cursor alphabet is wrapped into a
  cursor of the kind the request's sort gets, carrying the value as both the sort value and the
  id, so the keyset query still sees fuzzed text.
"""

import base64
import itertools
import json
import re
import uuid

import schemathesis

# The document's own patterns (crates/larder-api/src/openapi.rs).
IDEMPOTENCY_KEY = re.compile(r'^"*[!#-~]([!-~]{0,253}[!#-~])?"*$')
CURSOR_ALPHABET = re.compile(r"^[A-Za-z0-9_-]+$")
_serial = itertools.count()
_run = uuid.uuid4().hex[:12]


def _unique_key(key: str) -> str:
    core = key.strip('"')
    lead = key[: len(key) - len(key.lstrip('"'))]
    trail = key[len(key.rstrip('"')):]
    suffix = f"-{_run}-{next(_serial)}"
    return f"{lead}{core[: 255 - len(suffix)]}{suffix}{trail}"


def _is_cursor(text: str) -> bool:
    try:
        parts = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
    except ValueError:
        return False
    return isinstance(parts, list) and len(parts) == 3 and all(isinstance(p, str) for p in parts)


@schemathesis.hook
def before_call(context, case, kwargs):
    headers = case.headers or {}
    for name in list(headers):
        value = headers[name]
        if name.lower() == "idempotency-key" and isinstance(value, str) and IDEMPOTENCY_KEY.match(value):
            headers[name] = _unique_key(value)
    query = case.query or {}
    after = query.get("page[after]")
    if isinstance(after, str) and CURSOR_ALPHABET.match(after) and not _is_cursor(after):
        sort = str(query.get("sort", "id")).lstrip("-")
        kind, value = ("text", after) if sort == "id" else ("jsonb", json.dumps(after))
        cursor = json.dumps([kind, value, after]).encode()
        query["page[after]"] = base64.urlsafe_b64encode(cursor).decode().rstrip("=")
