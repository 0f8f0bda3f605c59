"""Schemathesis hooks for command-api's conformance run (command-api/tests/schemathesis.rs).

Generated ids name nothing, so without help every command on an existing resource would only
ever answer 404 or 422. Before each call, some of the time (``AGORA_ST_FIXTURE_RATE``, default
0.6) these hooks point the request at the fixtures the Rust test created through the API and
wrote to the JSON file named by ``AGORA_ST_FIXTURES``:

- path parameters ``post_id``, ``user_id``, ``conversation_id``, ``game_id`` become real ids;
- ``to`` and ``opponent_id`` in bodies become real user ids, and login uses a real handle and
  password;
- commands that consume their target (accept, move, resign) take the next game of a pool,
  and a move gets a body legal in it (``e2e4`` at ply 0, the caller playing white). The pool
  advances only after a 2xx, so a rejected request leaves the game for the next one;
- a mapped request gets a fresh ``Idempotency-Key`` when it had one, so it is not answered by
  the replay of an earlier request that happened to draw the same short key.

The other calls go out as generated: they exercise the 4xx answers.
The caller is always fixture user A (the ``Authorization`` header the test passes to ``st``).
"""

import json
import os
import random
import threading
import uuid

import schemathesis

with open(os.environ["AGORA_ST_FIXTURES"], encoding="utf-8") as f:
    FIXTURES = json.load(f)

RATE = float(os.environ.get("AGORA_ST_FIXTURE_RATE", "0.6"))
# Not the fuzzer's randomness: which requests get fixtures must not depend on what it drew.
RNG = random.Random(int(os.environ.get("AGORA_ST_SEED", "0")))
LOCK = threading.Lock()

# Pools of consumable targets: operation label -> fixture key; CURSORS: fixture key -> the
# index of the entry still unused.
POOLS = {
    "POST /v1/games/{game_id}/accept": "pending_games",
    "POST /v1/games/{game_id}/moves": "move_games",
    "POST /v1/games/{game_id}/resign": "resign_games",
}
CURSORS = {key: 0 for key in POOLS.values()}
# The pool entry each request in flight took: test case id -> (pool, index).
TAKEN = {}


def maybe():
    with LOCK:
        return RNG.random() < RATE


def pick(values):
    with LOCK:
        return RNG.choice(values)


def pooled(pool):
    """The pool's current entry and its index; the last one once the pool is used up."""
    with LOCK:
        entries = FIXTURES[pool]
        index = min(CURSORS[pool], len(entries) - 1)
        return entries[index], index


def other_users():
    return [FIXTURES["users"]["b"]["id"], FIXTURES["users"]["c"]["id"]]


def set_field(case, name, value):
    if isinstance(case.body, dict):
        case.body[name] = value


def fresh_idempotency_key(case):
    headers = case.headers
    if not headers:
        return
    for name in list(headers):
        if name.lower() == "idempotency-key":
            headers[name] = f"st-{uuid.uuid4()}"


@schemathesis.hook
def before_call(context, case, kwargs):
    method, path = case.operation.method.upper(), case.operation.path
    label = f"{method} {path}"
    if not maybe():
        return
    params = case.path_parameters if isinstance(case.path_parameters, dict) else None
    f = FIXTURES
    if label == "POST /v1/auth/login":
        a = f["users"]["a"]
        case.body = {"handle": a["handle"], "password": f["password"]}
    elif label == "POST /v1/auth/register":
        case.body = {
            "handle": f"st_{uuid.uuid4().hex[:12]}",
            "display_name": "Fuzzed",
            "password": f["password"],
        }
    elif label == "DELETE /v1/posts/{post_id}" and params is not None:
        # A's own post: deleting it again is an accepted no-op.
        params["post_id"] = f["deletable_post"]
    elif path.startswith("/v1/posts/{post_id}/") and params is not None:
        params["post_id"] = pick(f["posts"])
    elif path == "/v1/follows/{user_id}" and params is not None:
        params["user_id"] = pick(other_users())
    elif label == "POST /v1/messages":
        set_field(case, "to", pick(other_users()))
    elif label == "POST /v1/conversations/{conversation_id}/read" and params is not None:
        params["conversation_id"] = f["conversation"]
    elif label == "POST /v1/games":
        set_field(case, "opponent_id", pick(other_users()))
    elif label in POOLS and params is not None:
        pool = POOLS[label]
        game, index = pooled(pool)
        params["game_id"] = game
        if label.endswith("/moves"):
            case.body = {"uci": "e2e4", "ply": 0}
        with LOCK:
            TAKEN[case.id] = (pool, index)
    else:
        return
    fresh_idempotency_key(case)


@schemathesis.hook
def after_call(context, case, response):
    with LOCK:
        taken = TAKEN.pop(case.id, None)
        if taken is not None and 200 <= response.status_code < 300:
            pool, index = taken
            CURSORS[pool] = max(CURSORS[pool], index + 1)
