"""Schemathesis hooks for query-api's conformance run (query-api/tests/schemathesis.rs).

Generated ids name nothing, so without help every query of an existing resource would only
ever answer 404, and generated cursors and consistency tokens are almost never well-formed
(400). Before each call, some of the time (``AGORA_ST_FIXTURE_RATE``, default 0.6), these
hooks point the request at the fixtures the Rust test created through command-api, once the
projector had applied them, and wrote to the JSON file named by ``AGORA_ST_FIXTURES``:

- path parameters ``user_id``, ``handle``, ``post_id``, ``conversation_id``, ``game_id``
  become real ones;
- a ``cursor`` becomes a real ``next_cursor`` of that list (or is dropped when the test has
  none for it), and an ``X-Consistency-Token`` becomes the token of every fixture command,
  which the read models have reached.

The other calls go out as generated: they exercise the 4xx answers. The caller is always
fixture user A (the ``Authorization`` header the test passes to ``st``).
"""

import json
import os
import random
import threading

import schemathesis

with open(os.environ["AGORA_ST_FIXTURES"], encoding="utf-8") as f:
    FIXTURES = json.load(f)

RATE = float(os.environ.get("AGORA_ST_FIXTURE_RATE", "0.6"))
# Not the fuzzer's randomness: which requests get fixtures must not depend on what it drew.
RNG = random.Random(int(os.environ.get("AGORA_ST_SEED", "0")))
LOCK = threading.Lock()

# Path parameter -> the fixture list its real values come from.
PATH_VALUES = {
    "user_id": "users",
    "handle": "handles",
    "post_id": "posts",
    "conversation_id": "conversations",
    "game_id": "games",
}


def maybe():
    with LOCK:
        return RNG.random() < RATE


def pick(values):
    with LOCK:
        return RNG.choice(values)


def replace_header(headers, name, value):
    """Sets an existing header (any case) to ``value``, or removes it when ``value`` is None."""
    if not headers:
        return
    for key in list(headers):
        if key.lower() == name.lower():
            if value is None:
                del headers[key]
            else:
                headers[key] = value


@schemathesis.hook
def before_call(context, case, kwargs):
    if not maybe():
        return
    label = f"{case.operation.method.upper()} {case.operation.path}"
    params = case.path_parameters if isinstance(case.path_parameters, dict) else None
    if params is not None:
        for name in list(params):
            source = PATH_VALUES.get(name)
            if source is not None:
                params[name] = pick(FIXTURES[source])
    query = case.query if isinstance(case.query, dict) else None
    if query is not None and "cursor" in query:
        cursor = FIXTURES["cursors"].get(label)
        if cursor is None:
            del query["cursor"]
        else:
            query["cursor"] = cursor
    replace_header(case.headers, "X-Consistency-Token", FIXTURES["consistency_token"])
