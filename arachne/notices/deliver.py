"""Delivery channels for rendered notices: SMTP, or a folder of JSON files (outbox).

A channel gets text and the XARF JSON only; there is no way to hand it image bytes.
"""

from __future__ import annotations

import json
import os
import re
import smtplib
import ssl
import tempfile
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path
from typing import Protocol

from arachne.errors import DeliveryError
from arachne.notices.render import RenderedNotice
from arachne.settings import Settings

XARF_FILENAME = "xarf.json"


class Notifier(Protocol):
    channel: str

    def deliver(self, rendered: RenderedNotice, recipient: str) -> None:
        """Hand the notice over, or raise DeliveryError."""
        ...


class SmtpNotifier:
    """One SMTP session per notice: text body plus the XARF JSON attachment."""

    channel = "smtp"

    def __init__(
        self,
        host: str,
        port: int,
        sender: str,
        *,
        user: str | None = None,
        password: str | None = None,
        starttls: bool = False,
        timeout: float = 30.0,
        reply_to: str | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.sender = sender
        self.user = user
        self.password = password
        self.starttls = starttls
        self.timeout = timeout
        self.reply_to = reply_to

    @classmethod
    def from_settings(cls, settings: Settings) -> SmtpNotifier:
        return cls(
            settings.smtp_host,
            settings.smtp_port,
            settings.smtp_from,
            user=settings.smtp_user,
            password=settings.smtp_password,
            starttls=settings.smtp_starttls,
            timeout=settings.smtp_timeout,
            # Replies (removal confirmations) go to the hotline, not the sending mailbox.
            reply_to=settings.reporter_email,
        )

    def build_message(self, rendered: RenderedNotice, recipient: str) -> EmailMessage:
        msg = EmailMessage()
        msg["From"] = self.sender
        msg["To"] = recipient
        if self.reply_to and self.reply_to != self.sender:
            msg["Reply-To"] = self.reply_to
        msg["Subject"] = rendered.subject
        msg["Date"] = format_datetime(datetime.now(UTC))
        # Stable per notice: a retry after an ambiguous failure is recognisable as the same
        # message by the receiving abuse desk.
        domain = self.sender.rpartition("@")[2] or "arachne.invalid"
        msg["Message-ID"] = f"<{rendered.reference}@{domain}>"
        msg["X-Arachne-Reference"] = rendered.reference
        msg.set_content(rendered.body_text)
        msg.add_attachment(
            rendered.xarf_json().encode(),
            maintype="application",
            subtype="json",
            filename=XARF_FILENAME,
        )
        return msg

    def deliver(self, rendered: RenderedNotice, recipient: str) -> None:
        where = f"SMTP {self.host}:{self.port}"
        try:
            msg = self.build_message(rendered, recipient)
        except (ValueError, TypeError) as exc:  # e.g. a header with a line break in it
            raise DeliveryError(f"{where}: cannot build message to {recipient!r}: {exc}") from exc
        try:
            with smtplib.SMTP(self.host, self.port, timeout=self.timeout) as smtp:
                if self.starttls:
                    smtp.starttls(context=ssl.create_default_context())
                if self.user:
                    smtp.login(self.user, self.password or "")
                refused = smtp.send_message(msg, from_addr=self.sender, to_addrs=[recipient])
        except (smtplib.SMTPException, OSError) as exc:
            raise DeliveryError(f"{where}: {type(exc).__name__}: {exc}") from exc
        if refused:
            raise DeliveryError(f"{where}: recipient refused: {refused}")


class OutboxNotifier:
    """Writes each notice as ``<reference>.json`` into a folder, for operators without SMTP.

    Writing the same notice again replaces its file, so retries do not pile up copies.
    """

    channel = "outbox"

    def __init__(self, directory: Path | str) -> None:
        self.directory = Path(directory)

    def deliver(self, rendered: RenderedNotice, recipient: str) -> None:
        name = re.sub(r"[^A-Za-z0-9._-]", "_", rendered.reference) + ".json"
        record = {
            "reference": rendered.reference,
            "recipient": recipient,
            "subject": rendered.subject,
            "body": rendered.body_text,
            "xarf": rendered.xarf,
            "written_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            # Write then rename: a reader never sees half a notice.
            fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=".tmp-", suffix=".json")
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as f:
                    json.dump(record, f, indent=2, ensure_ascii=False)
                os.replace(tmp, self.directory / name)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        except OSError as exc:
            raise DeliveryError(f"outbox {self.directory}: {exc}") from exc
