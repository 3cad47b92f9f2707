"""Component schemas of the OpenAPI document (``openapi.py``): what each route answers.

They follow the dicts the handlers build (``views.py``, ``api*.py``, ``match_api.py``,
``store/summary.py``, ``notices/``); schemathesis checks real answers against them.
"""

from __future__ import annotations

from typing import Any

Schema = dict[str, Any]

STR: Schema = {"type": "string"}
INT: Schema = {"type": "integer"}
NUM: Schema = {"type": "number"}
BOOL: Schema = {"type": "boolean"}
COUNTS: Schema = {"type": "object", "additionalProperties": INT}
HASH_KINDS = ["pdq", "md5", "sha1", "sha256"]
ROLES = ["viewer", "operator", "admin"]
HEX_HASH: Schema = {
    "type": "string",
    "minLength": 32,
    "maxLength": 64,
    "pattern": "^[0-9a-fA-F]+$",
    "description": "Hex digits, as many as the kind has: md5 32, sha1 40, sha256 and pdq 64.",
}
NAME_PATTERN = "^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$"
URL: Schema = {
    "type": "string",
    "maxLength": 2048,
    "pattern": "^https?://[a-z0-9]([a-z0-9.-]{0,40}[a-z0-9])?(:[0-9]{1,5})?(/[!-~]{0,80})?$",
}


def null(schema: Schema) -> Schema:
    return {"anyOf": [schema, {"type": "null"}]}


def arr(items: Schema, **limits: int) -> Schema:
    return {"type": "array", "items": items, **limits}


def obj(
    props: dict[str, Schema], *, optional: tuple[str, ...] = (), closed: bool = False
) -> Schema:
    """An object whose properties are all required except ``optional``; ``closed`` for
    request bodies, where the API refuses unknown fields."""
    schema: Schema = {
        "type": "object",
        "properties": props,
        "required": [k for k in props if k not in optional],
    }
    if closed:
        schema["additionalProperties"] = False
    return schema


def ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def ints(*names: str) -> dict[str, Schema]:
    return dict.fromkeys(names, INT)


def bounded(low: int, high: int) -> Schema:
    return {"type": "integer", "minimum": low, "maximum": high}


# fmt: off
_RUN_FIGURES = obj(ints("pages", "page_errors", "images_found", "images_queued",
                        "images_fetched", "images_done", "images_matched"))
_REMOVAL = {
    **ints("incidents", "retracted", "open", "noticed", "still_up", "removed",
           "removed_after_notice", "removed_before_notice"),
    "median_seconds": null(NUM), "p90_seconds": null(NUM), "pct_within_24h": null(NUM),
}
_BY = {"type": "object", "additionalProperties": obj(_REMOVAL)}
_SUMMARY = {
    "campaign": STR, "status": STR,
    "run": null(obj({"number": INT, "status": STR})),
    "runs": arr(obj({"number": INT, "status": STR, "started_at": STR,
                     "finished_at": null(STR), "figures": _RUN_FIGURES})),
    "seeds": arr(STR), "started_at": null(STR), "finished_at": null(STR),
    **ints("pages", "page_errors", "images_found", "images_queued", "images_fetched",
           "images_recorded", "images_hashed", "low_quality", "hosts_with_matches"),
    "page_errors_by_reason": COUNTS,
    "matches": obj(ints("urls", "exact", "near")),
    "notices": {**obj({"total": INT}), "additionalProperties": INT},
    "errors": obj({"total": INT, "by_reason": COUNTS}),
}
_MATCH = obj({"kind": {"enum": ["exact", "near"]}, "hash_kind": {"enum": HASH_KINDS},
              "distance": INT, "variant": null(STR),
              # operators and admins only: the entry's list (null if since deleted) and id
              "list": null(STR), "entry_id": INT}, optional=("list", "entry_id"))

_RATES = null(obj({"pages_per_s": NUM, "images_per_s": NUM}))
_OVERVIEW_ROW = ("campaign", "status", "run", "pages", "images_found", "images_queued",
                 "images_fetched", "images_hashed", "matches", "hosts_with_matches", "notices",
                 "started_at", "finished_at")
_BOARD = {
    "generated_at": STR, "live": BOOL, "redis_banner": BOOL, "queue_depth": null(INT),
    "queues": arr(obj({"priority": STR, "name": STR, "depth": INT})),
    "rq": null(obj(ints("workers", "busy", "running", "failed", "retrying"))),
    "errors_by_reason": COUNTS,
    "today": obj(ints("matches", "notices", "notices_sent")),
}
_NOTICE = {"reference": STR, "host": STR, "kind": STR, "cycle": INT, "tier": INT,
           "recipient": null(STR), "recipient_source": null(STR), "channel": STR,
           "status": STR, "attempts": INT, "urls": INT, "language": null(STR),
           "created_at": null(STR), "sent_at": null(STR), "response": null(STR),
           "last_error": null(STR), "next_attempt_at": null(STR), "first_reference": null(STR)}
_NULL_STR, _NULL_INT = null(STR), null(INT)

SCHEMAS: dict[str, Schema] = {
    "Error": obj({"error": STR, "detail": STR}),
    "CampaignSummary": obj({**_SUMMARY, "rates": _RATES}, optional=("rates",)),
    "Overview": obj({**_BOARD, "campaigns": arr(ref("CampaignSummary"))}),
    "OverviewRow": obj({**{k: _SUMMARY[k] for k in _OVERVIEW_ROW}, "rates": _RATES}),
    "LiveOverview": obj({**_BOARD, "campaigns": arr(ref("OverviewRow"))}),
    "Series": obj({"campaign": STR, "status": STR, "live": BOOL, "resolution": STR,
                   "bucket_seconds": INT, "clipped": BOOL, "t": arr(INT),
                   "series": arr(obj({"key": STR, "label": STR, "color": STR,
                                      "per_bucket": arr(INT), "cumulative": arr(INT),
                                      "total": INT}))}),
    "ErrorUrls": obj({"campaign": STR, "reason": _NULL_STR, "host": _NULL_STR,
                      "text": _NULL_STR, "limit": INT, "offset": INT, "total": INT,
                      "rows": arr(obj({"url": STR, "host": STR, "reason": _NULL_STR,
                                       "detail": _NULL_STR, "http_status": _NULL_INT,
                                       "run": _NULL_INT, "at": _NULL_STR}))}),
    "Workers": obj({
        "live": BOOL,
        "workers": arr(obj({"name": STR, "hostname": _NULL_STR, "pid": _NULL_INT, "state": STR,
                            "queues": arr(STR), "current_job": _NULL_STR,
                            "current_batch": _NULL_STR, "last_heartbeat": _NULL_STR,
                            "started_at": _NULL_STR})),
        "queues": arr(obj(ints("waiting", "running", "failed", "scheduled") | {"name": STR})),
        "failed": arr(obj({"id": STR, "queue": STR, "description": _NULL_STR,
                           "campaign": _NULL_STR, "failed_at": _NULL_STR, "error": _NULL_STR,
                           "retries_left": _NULL_INT})),
    }),
    "Requeued": obj({"requeued": STR, "queue": STR, "description": _NULL_STR}),
    "NoticeList": obj({"campaign": _NULL_STR, "status": _NULL_STR, "channel": _NULL_STR,
                       "text": _NULL_STR, "limit": _NULL_INT, "offset": INT, "total": INT,
                       "notices": arr(obj({**_NOTICE, "campaign": _NULL_STR,
                                           "history": arr({"type": "object"})}))}),
    "Removal": obj({"campaign": null(STR), "resolution_seconds": NUM, **_REMOVAL,
                    "by_provider": _BY, "by_country": _BY}),
    "Stats": obj({**_SUMMARY, "queue_depth": null(INT), "live_available": BOOL,
                  "redis_banner": BOOL, "removal": ref("Removal"), "live": null(COUNTS),
                  "errors_by_reason": COUNTS}),
    "MatchRow": obj({"host": STR, "url": STR, "page_url": null(STR), "kind": STR,
                     "hash_kind": STR, "distance": null(INT), "variant": null(STR),
                     "list": STR, "category": null(STR), "matched_at": null(STR)}),
    "Notice": obj(_NOTICE),
    "Campaign": obj({"name": STR, "status": STR, "seeds": arr(STR), "scope": {"type": "object"},
                     "created_at": STR}),
    "NewCampaign": obj({
        "name": {"type": "string", "pattern": NAME_PATTERN},
        "seeds": arr(URL, minItems=1, maxItems=1000),
        "allow_hosts": arr({"type": "string", "pattern": "^[a-z0-9.-]{1,63}$"}, maxItems=100),
        "max_depth": bounded(0, 1000),
        "max_pages": bounded(1, 10**9),
        "max_pages_per_host": bounded(1, 10**9),
        "stop_after": bounded(1, 10**9),
        "robots": {"enum": ["obey", "record", "ignore"]},
        "priority": {"enum": ["high", "normal", "low"]},
    }, optional=("allow_hosts", "max_depth", "max_pages", "max_pages_per_host", "stop_after",
                 "robots", "priority"), closed=True),
    "RunOptions": obj({"workers": bounded(1, 64)}, optional=("workers",), closed=True),
    "SendOptions": obj({"dry_run": {**BOOL, "default": False}}, optional=("dry_run",),
                       closed=True),
    "SendReport": obj({"campaign": STR, "dry_run": BOOL,
                       **ints("hosts", "sent", "no_contact", "failed", "already_sent"),
                       "notices": arr(obj({"host": STR, "status": STR,
                                           "reference": null(STR)})),
                       "previews": arr(obj({"recipient": null(STR), "reference": STR,
                                            "subject": STR, "language": STR,
                                            "reports": INT}))},
                      optional=("previews",)),
    "Started": obj({"campaign": STR, "pid": INT, "workers": INT, "log": STR}),
    "Control": obj({"campaign": STR, "run": INT,
                    "status": {"enum": ["paused", "running", "cancelled"]}}),
    "SubmitUrls": obj({"urls": arr(URL, minItems=1, maxItems=1000),
                       "as": {"enum": ["seeds", "images"], "default": "seeds"}},
                      optional=("as",), closed=True),
    "Submitted": {"oneOf": [
        obj({"campaign": STR, "as": {"const": "seeds"}, **ints("seeds_added", "seeds_known"),
             "frontier": null(obj(ints("run", "added", "duplicate", "capped")))}),
        obj({"campaign": STR, "as": {"const": "images"}, **ints("run", "queued", "known")}),
    ]},
    "ListSummary": obj({"name": STR, "format": STR, "source": null(STR), "threshold": null(INT),
                        "imported_at": STR, "updated_at": STR, "active": COUNTS,
                        "active_total": INT, "retracted": INT}),
    "ImportReport": obj({"name": STR, "version": INT, "format": STR,
                         **ints("added", "updated", "retracted", "unchanged"),
                         "active": COUNTS, "skipped": COUNTS,
                         **ints("duplicates", "conflicts"), "rematch": null(STR)}),
    "Retract": obj({"ids": arr({"type": "string", "minLength": 1, "maxLength": 200},
                               minItems=1, maxItems=10_000)}, closed=True),
    "ListChange": obj({"name": STR, "version": INT, "action": STR,
                       **ints("added", "updated", "retracted"), "active": COUNTS,
                       "unknown_ids": arr(STR)}),
    "MatchRequest": obj({"queries": arr(
        obj({"hash": HEX_HASH, "hash_kind": {"enum": HASH_KINDS}}, closed=True),
        minItems=1, maxItems=1000)}, closed=True),
    "MatchResponse": obj({"results": arr(obj({"result": {"enum": ["match", "no-match"]},
                                              "matches": arr(_MATCH)}))}),
    "User": obj({"name": STR, "role": {"enum": ROLES}, "created_at": STR}),
    "NewUser": obj({"name": {"type": "string", "minLength": 1, "maxLength": 100},
                    "role": {"enum": ROLES, "default": "viewer"},
                    "password": {"type": "string", "minLength": 12}},
                   optional=("role",), closed=True),
    "Token": obj({"id": INT, "name": STR, "role": {"enum": ROLES}, "prefix": STR,
                  "created_at": STR, "created_by": _NULL_STR, "expires_at": _NULL_STR,
                  "last_used_at": _NULL_STR, "state": {"enum": ["active", "expired", "revoked"]}}),
    "NewToken": obj({"name": {"type": "string", "minLength": 1, "maxLength": 100},
                     "role": {"enum": ROLES, "default": "viewer"},
                     "expires_days": null({"type": "number", "exclusiveMinimum": 0,
                                           "maximum": 3650})},
                    optional=("role", "expires_days"), closed=True),
    "NewTokenAnswer": obj({"id": INT, "name": STR, "role": {"enum": ROLES},
                           "expires_at": _NULL_STR, "token": STR}),
    "Ready": obj({"status": {"enum": ["ready", "unavailable"]},
                  "checks": obj({"store": STR, "redis": STR})}),
}
# fmt: on
