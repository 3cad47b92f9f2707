"""The OpenAPI 3.1 document of the JSON API, served at ``/api/openapi.json``.

Written by hand next to the handlers (``api*.py``, ``match_api.py``, ``views.py``,
``metrics.py``), with the component schemas in ``openapi_schemas.py``.
``tests/test_dashboard_openapi.py`` checks that it lists exactly the routes the app serves,
and schemathesis checks real answers against it.
"""

from __future__ import annotations

import re
from functools import cache
from typing import Any

from arachne import __version__
from arachne.dashboard.openapi_schemas import (
    BOOL,
    HASH_KINDS,
    INT,
    ROLES,
    SCHEMAS,
    STR,
    Schema,
    arr,
    bounded,
    obj,
    ref,
)

ERRORS = {
    400: "Bad input: malformed JSON, a field out of range, a bad URL, hash or list file, or a "
    "control character in a parameter.",
    401: "No token, or an unknown, expired or revoked one.",
    403: "The token's role is too low for this (or a session request lacks its CSRF token).",
    404: "No campaign or list by that name.",
    409: "Refused in the current state (exists already, being run, paused, ...).",
    413: "The body is too large.",
    415: "The body's media type is not one this route reads.",
    503: "A service it needs (Redis) is not reachable, or no console user exists yet.",
}
PATH_PARAM = {
    "in": "path",
    "required": True,
    "schema": {"type": "string", "minLength": 1, "maxLength": 200},
}
BINARY = {"type": "string", "format": "binary"}


def answer(description: str, schema: Schema | None = None, **extra: Any) -> Schema:
    out: Schema = {"description": description, **extra}
    if schema is not None:
        out["content"] = {"application/json": {"schema": schema}}
    return out


def op(
    summary: str,
    tag: str,
    ok: dict[int, Schema],
    errors: tuple[int, ...] = (),
    *,
    role: str | None = "viewer",
    body: Schema | None = None,
    params: list[Schema] | None = None,
    notes: str = "",
    why: dict[int, str] | None = None,
) -> Schema:
    """One operation. ``role`` None is public; any other may answer 401 (no or bad token)
    and 503 (no user set up yet), an operator's or admin's also 403 (a lower role). ``why`` replaces
    the common description of an error code where this route has its own reasons."""
    codes = set(errors)
    if role is not None:
        codes |= {401, 503} | ({403} if role in ("operator", "admin") else set())
    said = ERRORS | (why or {})
    responses = {str(code): schema for code, schema in ok.items()}
    responses.update({str(code): answer(said[code], ref("Error")) for code in sorted(codes)})
    out: Schema = {"summary": summary, "tags": [tag], "responses": responses}
    if role is None:
        out["security"] = []
    else:
        out["description"] = f"Needs the **{role}** role." + (f" {notes}" if notes else "")
    if body is not None:
        out["requestBody"] = body
    if params:
        out["parameters"] = params
    return out


def json_body(schema: Schema, *, required: bool = True) -> Schema:
    return {"required": required, "content": {"application/json": {"schema": schema}}}


def query(name: str, schema: Schema, description: str) -> Schema:
    return {"name": name, "in": "query", "schema": schema, "description": description}


# fmt: off
def _campaign_paths() -> dict[str, Schema]:
    c = "campaigns"
    paths: dict[str, Schema] = {
        "/api/campaigns": {
            "get": op("Every campaign with its figures", c,
                      {200: answer("The campaigns.", ref("Overview"))}),
            "post": op("Create a campaign (as `arachne campaign create`)", c,
                       {201: answer("Created.", ref("Campaign"),
                                    headers={"Location": {"schema": STR}})},
                       (400, 409, 413), role="operator", body=json_body(ref("NewCampaign"))),
        },
        "/api/overview": {"get": op(
            "What the overview page polls: system figures and a row a campaign", c,
            {200: answer("The overview.", ref("LiveOverview"))})},
        "/api/campaigns/{name}/series": {"get": op(
            "Crawl progress over time, bucketed for charts", c,
            {200: answer("The series.", ref("Series"))}, (400, 404), params=[
                query("resolution", STR, "auto (default), or a bucket size: 2s, 10s, 1m, "
                      "5m, 15m, 1h, 1d."),
            ])},
        "/api/campaigns/{name}/errors": {"get": op(
            "Image URLs whose fetch or hash failed, with the reason; filtered and paged", c,
            {200: answer("A page of error URLs.", ref("ErrorUrls"))}, (400, 404), params=[
                query("reason", STR, "Only this reason (timeout, too_large, ...)."),
                query("host", STR, "Only this host."),
                query("q", STR, "Only URLs containing this."),
                query("limit", INT, "Rows, 1 to 10,000 (default 500)."),
                query("offset", INT, "Rows skipped (default 0)."),
            ])},
        "/api/campaigns/{name}/stats": {"get": op(
            "One campaign's figures, live counters and time to removal", c,
            {200: answer("The figures.", ref("Stats"))}, (404,))},
        "/api/campaigns/{name}/matches": {"get": op(
            "Matched image URLs of a campaign, paged (never a hash value)", c,
            {200: answer("A page of matches.", obj({"campaign": STR, "total": INT,
                         "offset": INT, "matches": arr(ref("MatchRow"))}))},
            (400, 404), params=[
                query("limit", INT, "Rows, 1 to 10,000 (default 1,000)."),
                query("offset", INT, "Rows skipped (default 0)."),
            ])},
        "/api/campaigns/{name}/notices": {"get": op(
            "A campaign's notices with their state", c,
            {200: answer("The notices, newest first.",
                         obj({"campaign": STR, "notices": arr(ref("Notice"))}))}, (404,)),
            "post": op(
            "Send what is due, as `arachne notices send`: one notice per host for newly "
            "matched URLs, and due reminders (nothing is sent twice)", c,
            {200: answer("What was sent (or, with dry_run, rendered and validated).",
                         ref("SendReport"))}, (400, 404, 409, 413), role="operator",
            body=json_body(ref("SendOptions"), required=False),
            why={409: "Notices are not configured yet (the hotline's identity, the channel): "
                 "the detail says which setting is missing."})},
        "/api/campaigns/{name}/removal": {"get": op(
            "Time to removal: median, p90, share within 24 h, per provider and country", c,
            {200: answer("The distribution.", ref("Removal"))}, (404,))},
        "/api/campaigns/{name}/run": {"post": op(
            "Start `arachne run NAME` in the background: the unfinished run, else a new one", c,
            {202: answer("Started.", ref("Started"))}, (400, 404, 409, 413), role="operator",
            body=json_body(ref("RunOptions"), required=False))},
        "/api/campaigns/{name}/urls": {"post": op(
            "Submit URLs: page URLs as seeds (the run in progress gets them too), or image "
            "URLs queued for the workers in the run in progress", c,
            {200: answer("What was added.", ref("Submitted"))}, (400, 404, 409, 413),
            role="operator", body=json_body(ref("SubmitUrls")))},
    }
    for action, state in (("pause", "paused"), ("resume", "running"), ("cancel", "cancelled")):
        paths[f"/api/campaigns/{{name}}/{action}"] = {"post": op(
            f"{action.capitalize()} the campaign's latest run (as `arachne campaign {action}`)",
            c, {200: answer(f"The run is {state}.", ref("Control"))}, (404, 409),
            role="operator")}
    return paths


def _other_paths() -> dict[str, Schema]:
    return {
        "/api/workers": {"get": op(
            "rq workers with their current batch, queues, and failed jobs with their error",
            "workers", {200: answer("Workers and queues.", ref("Workers"))})},
        "/api/jobs/{id}/requeue": {"post": op(
            "Put a failed job back on its queue", "workers",
            {200: answer("Requeued.", ref("Requeued"))}, (400, 404), role="operator")},
        "/api/notices": {"get": op(
            "Every notice with its state and history, filtered and paged", "notices",
            {200: answer("The notices, newest first.", ref("NoticeList"))}, (400,), params=[
                query("campaign", STR, "Only this campaign's."),
                query("status", STR, "Only notices in this state."),
                query("channel", STR, "Only this channel (smtp, http, ...)."),
                query("q", STR, "In the reference, host or recipient."),
                query("limit", INT, "Rows, 1 to 10,000 (default: all)."),
                query("offset", INT, "Rows skipped (default 0)."),
            ])},
        "/api/lists": {"get": op(
            "Known-hash lists with counts by kind (never a hash value)", "lists",
            {200: answer("The lists.", obj({"lists": arr(ref("ListSummary"))}))})},
        "/api/lists/{name}/import": {"post": op(
            "Import a list file (as `arachne lists import`): the raw body, or the multipart "
            "field `file`", "lists", {200: answer("What changed.", ref("ImportReport"))},
            (400, 409, 413), role="operator",
            body={"required": True, "content": {
                "multipart/form-data": {"schema": obj({"file": BINARY})},
                "text/plain": {"schema": STR},
                "application/octet-stream": {"schema": BINARY},
            }},
            params=[
                query("format", {"enum": ["ncmec", "vics", "csv", "text"]},
                      "Force a format (default: detected from the content)."),
                query("kind", {"enum": HASH_KINDS}, "Hash kind of bare 64-hex lines."),
                query("threshold", bounded(0, 128), "PDQ distance for this list."),
                query("category", {"type": "string", "minLength": 1, "maxLength": 64},
                      "Import only entries of this category (repeatable)."),
                query("force", BOOL, "Import even an empty file, or one that would retract "
                      "more than the allowed share of the list."),
                query("rematch", BOOL, "Match new entries against the stored images "
                      "(default true)."),
            ])},
        "/api/lists/{name}/retract": {"post": op(
            "Retract entries by external id (as `arachne lists retract`)", "lists",
            {200: answer("What changed.", ref("ListChange"))}, (400, 404, 413),
            role="operator", body=json_body(ref("Retract")))},
        "/api/match": {"post": op(
            "Match up to 1,000 hashes, or one image (hashed in memory, then dropped), against "
            "the lists; list names only for operators", "match",
            {200: answer("One result per query, in order.", ref("MatchResponse"))},
            (400, 403, 413, 415), body={"required": True, "content": {
                "application/json": {"schema": ref("MatchRequest")},
                "multipart/form-data": {"schema": {
                    **obj({"image": BINARY}, closed=True),
                    "description": "Exactly one field, `image`: the image file."}},
                "image/*": {"schema": BINARY},
                "application/octet-stream": {"schema": BINARY},
            }}, notes="Send hashes as JSON, or one image: a multipart form with the single "
            "field `image`, or the raw bytes as `image/*` or `application/octet-stream`. "
            "Matches carry `list` and `entry_id` only for the **operator** and **admin** roles.",
            why={
                400: "Bad input: malformed JSON, an unknown field, a bad hash or hash kind, a "
                     "malformed multipart body or one without the single field `image`, or an "
                     "upload that is not a decodable image.",
                413: "More than 1,000 queries, a JSON body over 1 MiB, or an image over the "
                     "byte or pixel limit.",
                503: "The hash lists could not be loaded from the store (try again shortly), "
                     "or no console user exists yet.",
            })},
        **_access_paths(),
        "/api/openapi.json": {"get": op(
            "This document", "meta", {200: answer("OpenAPI 3.1.", {"type": "object"})})},
        "/status/live": {"get": op(
            "Liveness: the process answers", "health",
            {200: answer("Alive.", obj({"status": {"const": "ok"}}))}, role=None)},
        "/status/ready": {"get": op(
            "Readiness: Redis and the store answer", "health",
            {200: answer("Ready.", ref("Ready")),
             503: answer("Redis or the store does not answer (see checks).", ref("Ready"))},
            role=None)},
        "/metrics": {"get": op(
            "Prometheus metrics in the text exposition format (open when "
            "dashboard_metrics_open is set)", "health",
            {200: {"description": "Metrics.", "content": {"text/plain": {"schema": STR}}}})},
    }


def _access_paths() -> dict[str, Schema]:
    a = "access"
    return {
        "/api/users": {
            "get": op("Console users (never a password)", a,
                      {200: answer("The users.", obj({"users": arr(ref("User"))}))}, role="admin"),
            "post": op("Add a console user (as `arachne users add`)", a,
                       {201: answer("Added.", obj({"name": STR, "role": {"enum": ROLES}}))},
                       (400, 409, 413), role="admin", body=json_body(ref("NewUser"))),
        },
        "/api/users/{name}": {"delete": op(
            "Remove a console user (never the last admin)", a,
            {200: answer("Removed.", obj({"name": STR, "removed": {"const": True}}))},
            (404, 409), role="admin")},
        "/api/tokens": {
            "get": op("API tokens with their state (never the token itself)", a,
                      {200: answer("The tokens.", obj({"tokens": arr(ref("Token"))}))},
                      role="admin"),
            "post": op("Create an API token: shown in this answer only", a,
                       {201: answer("Created.", ref("NewTokenAnswer"))}, (400, 413),
                       role="admin", body=json_body(ref("NewToken")))},
        "/api/tokens/{id}/revoke": {"post": op(
            "Revoke an API token, at once", a,
            {200: answer("Revoked.", obj({"id": INT, "revoked": {"const": True}}))},
            (400, 404), role="admin")},
    }
# fmt: on


@cache
def _document() -> dict[str, Any]:
    paths = {**_campaign_paths(), **_other_paths()}
    for path, item in paths.items():
        names = re.findall(r"{(\w+)}", path)
        for operation in item.values():
            given = [{**PATH_PARAM, "name": name} for name in names]
            operation["parameters"] = [*given, *operation.get("parameters", [])]
            if not operation["parameters"]:
                del operation["parameters"]
            elif "400" not in operation["responses"]:
                # Any parameter may carry what Arachne refuses to keep (NUL, a control
                # character, a lone surrogate): inputs.clean_paths answers 400.
                operation["responses"]["400"] = answer(ERRORS[400], ref("Error"))
                operation["responses"] = dict(sorted(operation["responses"].items()))
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Arachne API",
            "version": __version__,
            "description": "Campaigns, known-hash lists, matching and health of an Arachne "
            "console. Send `Authorization: Bearer <token>` (`arachne tokens create`). Errors "
            "are JSON `{error, detail}`.",
        },
        "security": [{"bearerAuth": []}],
        "tags": [
            {"name": t}
            for t in (
                "campaigns",
                "lists",
                "match",
                "workers",
                "notices",
                "access",
                "health",
                "meta",
            )
        ],
        "paths": dict(sorted(paths.items())),
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer"}},
        },
    }


def document() -> dict[str, Any]:
    """The document (built once; callers get the shared dict and must not change it)."""
    return _document()
