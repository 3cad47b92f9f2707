"""Send a campaign's removal notices from the console: what `arachne notices send` does.

One notice per host for newly matched URLs and the reminders that are due; safe to repeat
(the ledger sends nothing twice). A dry run renders and validates, and sends nothing.
"""

from __future__ import annotations

from aiohttp import web

from arachne.dashboard.api import call, only, read_body
from arachne.dashboard.security import requires
from arachne.dashboard.views import SETTINGS, json_response
from arachne.errors import ConfigError
from arachne.notices.send import SendReport, send_notices
from arachne.settings import Settings
from arachne.store.db import Store
from arachne.store.summary import get_campaign


def setup(app: web.Application) -> None:
    app.router.add_post("/api/campaigns/{name}/notices", send_due, name="api_campaign_send")


@requires("operator")
async def send_due(request: web.Request) -> web.Response:
    body = await read_body(request, optional=True)
    only(body, {"dry_run"})
    dry_run = body.get("dry_run", False)
    if not isinstance(dry_run, bool):
        raise web.HTTPBadRequest(text="dry_run must be true or false")
    name = request.match_info["name"]
    try:
        # Contacts (DNS, RDAP) and delivery block: call() runs it in a thread.
        report = await call(request, _send, request.app[SETTINGS], name, dry_run)
    except ConfigError as exc:  # no sender identity or channel: refused until it is set up
        raise web.HTTPConflict(text=f"notices are not configured: {exc}") from None
    answer = {"campaign": name, "dry_run": dry_run, **report.as_json()}
    if dry_run:
        answer["previews"] = [
            {"recipient": to, "reference": r.reference, "subject": r.subject,
             "language": r.language, "reports": len(r.xarf_reports)}
            for to, r in report.previews
        ]  # fmt: skip
    # A failed delivery is counted in "failed" (the notices list says why); sending again
    # retries only those.
    return json_response(answer)


def _send(store: Store, settings: Settings, name: str, dry_run: bool) -> SendReport:
    with store.session() as session:
        get_campaign(session, name)  # an unknown campaign is a 404 before any setup check
    return send_notices(store, settings, name, dry_run=dry_run)
