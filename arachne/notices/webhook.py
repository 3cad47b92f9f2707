"""Webhook delivery: POST the notice as JSON, signed with HMAC-SHA256.

Body: ``{"reference", "recipient", "subject", "body", "xarf": [reports...], "sent_at"}``,
UTF-8 JSON. ``X-Arachne-Signature: sha256=<hex>`` is the HMAC-SHA256 of exactly those body
bytes under ``settings.webhook_secret``, so a receiver verifies before it parses;
``X-Arachne-Reference`` names the notice (a receiver can drop repeats: delivery is at
least once). Any 2xx is acceptance; redirects are not followed (a signed notice goes only
where it was configured to go). 408, 429 and 5xx, timeouts and connection failures are
transient; other statuses are permanent.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import UTC, datetime
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import aiohttp

from arachne import __version__
from arachne.aio import run_sync
from arachne.errors import ConfigError, DeliveryError
from arachne.notices.channel import DeliveryReceipt
from arachne.notices.render import RenderedNotice, iso_utc

if TYPE_CHECKING:
    from arachne.settings import Settings

SIGNATURE_HEADER = "X-Arachne-Signature"
REFERENCE_HEADER = "X-Arachne-Reference"
TRANSIENT_STATUSES = frozenset({408, 425, 429})


def sign(secret: str, body: bytes) -> str:
    """The signature header's value for these body bytes."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class WebhookNotifier:
    channel = "webhook"
    preview = False

    def __init__(self, url: str, secret: str, *, timeout: float = 30.0) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(f"ARACHNE_WEBHOOK_URL: {url!r} is not an http(s) URL")
        if not secret:
            raise ConfigError("ARACHNE_WEBHOOK_SECRET is required: receivers verify the HMAC")
        self.url = url
        self.secret = secret
        self.timeout = timeout

    @classmethod
    def from_settings(cls, settings: Settings) -> WebhookNotifier:
        if not settings.webhook_url:
            raise ConfigError("notice_channel 'webhook' needs ARACHNE_WEBHOOK_URL")
        return cls(
            settings.webhook_url, settings.webhook_secret or "", timeout=settings.webhook_timeout
        )

    def payload(self, rendered: RenderedNotice, recipient: str, sent_at: datetime) -> bytes:
        return json.dumps(
            {
                "reference": rendered.reference,
                "recipient": recipient,
                "subject": rendered.subject,
                "body": rendered.body_text,
                "xarf": list(rendered.xarf_reports),
                "sent_at": iso_utc(sent_at),
            },
            ensure_ascii=False,
        ).encode()

    def deliver(self, rendered: RenderedNotice, recipient: str) -> DeliveryReceipt:
        body = self.payload(rendered, recipient, datetime.now(UTC))
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            "User-Agent": f"arachne/{__version__}",
            SIGNATURE_HEADER: sign(self.secret, body),
            REFERENCE_HEADER: rendered.reference,
        }
        return run_sync(lambda: self._post(body, headers))

    async def _post(self, body: bytes, headers: dict[str, str]) -> DeliveryReceipt:
        where = f"webhook {self.url}"
        timeout = aiohttp.ClientTimeout(total=self.timeout)
        try:
            async with (
                aiohttp.ClientSession(timeout=timeout) as session,
                session.post(self.url, data=body, headers=headers, allow_redirects=False) as resp,
            ):
                status = resp.status
                text = (await resp.text(errors="replace"))[:200]
        except TimeoutError as exc:
            raise DeliveryError(f"{where}: timed out after {self.timeout:g}s") from exc
        except aiohttp.ClientError as exc:
            raise DeliveryError(f"{where}: {type(exc).__name__}: {exc}") from exc
        if 200 <= status < 300:
            return DeliveryReceipt("webhook", datetime.now(UTC), f"HTTP {status}")
        transient = status >= 500 or status in TRANSIENT_STATUSES
        detail = " ".join(text.split())
        raise DeliveryError(
            f"{where}: HTTP {status}" + (f": {detail}" if detail else ""), transient=transient
        )
