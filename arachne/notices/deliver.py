"""Delivery channels behind one Notifier protocol: SMTP, webhook, or a folder (outbox).

``build_notifier`` picks one from ``settings.notice_channel``. Each channel returns a
DeliveryReceipt or raises DeliveryError; the outbox is a preview (``preview = True``): it
writes what would be sent and never counts as delivered.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from arachne.errors import ConfigError, DeliveryError
from arachne.notices.channel import DeliveryReceipt, Notifier
from arachne.notices.render import RenderedNotice, iso_utc
from arachne.notices.smtp import SmtpNotifier, xarf_filename
from arachne.notices.webhook import WebhookNotifier

if TYPE_CHECKING:
    from arachne.settings import Settings

__all__ = [
    "CHANNELS",
    "DeliveryReceipt",
    "Notifier",
    "OutboxNotifier",
    "SmtpNotifier",
    "WebhookNotifier",
    "build_notifier",
    "xarf_filename",
]

CHANNELS = ("smtp", "webhook", "outbox")
"""Values of settings.notice_channel."""


class OutboxNotifier:
    """Writes each notice as ``<reference>.json`` into a folder: a preview, nothing is sent.

    Writing the same notice again replaces its file, so retries do not pile up copies.
    """

    channel = "outbox"
    preview = True

    def __init__(self, directory: Path | str) -> None:
        self.directory = Path(directory)

    def path_for(self, reference: str) -> Path:
        return self.directory / (re.sub(r"[^A-Za-z0-9._-]", "_", reference) + ".json")

    def deliver(self, rendered: RenderedNotice, recipient: str) -> DeliveryReceipt:
        now = datetime.now(UTC)
        record = {
            "reference": rendered.reference,
            "recipient": recipient,
            "subject": rendered.subject,
            "language": rendered.language,
            "body": rendered.body_text,
            "xarf": list(rendered.xarf_reports),
            "written_at": iso_utc(now),
        }
        target = self.path_for(rendered.reference)
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            # Write then rename: a reader never sees half a notice.
            fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=".tmp-", suffix=".json")
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as f:
                    json.dump(record, f, indent=2, ensure_ascii=False)
                os.replace(tmp, target)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        except OSError as exc:
            raise DeliveryError(f"outbox {self.directory}: {exc}") from exc
        return DeliveryReceipt("outbox", now, f"written {target}")


def build_notifier(settings: Settings, channel: str | None = None) -> Notifier:
    """The configured channel (``channel`` overrides settings); ConfigError when incomplete."""
    name = (channel or settings.notice_channel).strip().lower()
    if name == "smtp":
        return SmtpNotifier.from_settings(settings)
    if name == "webhook":
        return WebhookNotifier.from_settings(settings)
    if name == "outbox":
        if settings.outbox_dir is None:
            raise ConfigError("notice_channel 'outbox' needs ARACHNE_OUTBOX_DIR")
        return OutboxNotifier(settings.outbox_dir)
    raise ConfigError(f"unknown notice channel {name!r}: choose one of {', '.join(CHANNELS)}")
