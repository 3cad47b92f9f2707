"""SMTP delivery: one message per notice, the text body plus one XARF JSON file per report.

Attachments: ``xarf-1.json``, ``xarf-2.json``, ... (``application/json``), each holding one
report object, in the order of the body's URL list. XARF v4 is one incident per report
and its parsers (``xarf.parse``) take one JSON object, not an array, so each attachment
can go straight into a receiver's parser.

The SMTP dialogue is run step by step (MAIL, RCPT, DATA) rather than with send_message so
the receipt keeps the server's final reply ("250 2.0.0 Ok: queued as ...") and every
failure says which step and what code. 4xx replies, refused or dropped connections and
timeouts are transient; 5xx replies and TLS/auth misconfiguration are permanent.
"""

from __future__ import annotations

import contextlib
import json
import re
import smtplib
import ssl
from datetime import UTC, datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime
from typing import TYPE_CHECKING

from arachne.errors import ConfigError, DeliveryError
from arachne.notices.channel import DeliveryReceipt
from arachne.notices.render import RenderedNotice
from arachne.notices.sender import address_domain, is_address, sender_identity

if TYPE_CHECKING:
    from arachne.settings import Settings


def xarf_filename(index: int) -> str:
    """Attachment name of the index-th report (1-based)."""
    return f"xarf-{index}.json"


def _text(reply: bytes | str) -> str:
    text = reply.decode("utf-8", "replace") if isinstance(reply, bytes) else reply
    return " ".join(text.split())


class SmtpNotifier:
    channel = "smtp"
    preview = False

    def __init__(
        self,
        host: str,
        port: int,
        sender: str,
        *,
        user: str | None = None,
        password: str | None = None,
        starttls: bool = False,
        implicit_tls: bool = False,
        timeout: float = 30.0,
        reply_to: str | None = None,
        from_name: str | None = None,
        tls_context: ssl.SSLContext | None = None,
    ) -> None:
        if starttls and implicit_tls:
            raise ConfigError("SMTP: choose STARTTLS (smtp_starttls) or implicit TLS (smtp_ssl)")
        self.host = host
        self.port = port
        self.sender = sender
        self.user = user
        self.password = password
        self.starttls = starttls
        self.implicit_tls = implicit_tls
        self.timeout = timeout
        self.reply_to = reply_to
        self.from_name = from_name
        self.tls_context = tls_context

    @classmethod
    def from_settings(cls, settings: Settings) -> SmtpNotifier:
        """ConfigError when the sender identity is missing or a placeholder (outside demo)."""
        identity = sender_identity(settings, preview=False)
        return cls(
            settings.smtp_host,
            settings.smtp_port,
            identity.from_addr,
            user=settings.smtp_user,
            password=settings.smtp_password,
            starttls=settings.smtp_starttls,
            implicit_tls=settings.smtp_ssl,
            timeout=settings.smtp_timeout,
            # Replies (removal confirmations) go to the hotline, not the sending mailbox.
            reply_to=identity.email,
            from_name=identity.org,
        )

    @property
    def where(self) -> str:
        return f"SMTP {self.host}:{self.port}"

    def _message_id(self, reference: str) -> str:
        # Stable per notice: a retry after an ambiguous failure is recognisable as the
        # same message by the receiving abuse desk.
        local = re.sub(r"[^A-Za-z0-9._-]", "_", reference)
        return f"<{local}@{address_domain(self.sender) or 'arachne.invalid'}>"

    def build_message(self, rendered: RenderedNotice, recipient: str) -> EmailMessage:
        msg = EmailMessage()
        msg["From"] = Address(display_name=self.from_name or "", addr_spec=self.sender)
        msg["To"] = recipient
        if self.reply_to and self.reply_to != self.sender:
            msg["Reply-To"] = self.reply_to
        msg["Subject"] = rendered.subject
        msg["Date"] = format_datetime(datetime.now(UTC))
        msg["Message-ID"] = self._message_id(rendered.reference)
        if rendered.first_reference:  # reminders thread onto the first notice's ticket
            first = self._message_id(rendered.first_reference)
            msg["In-Reply-To"] = first
            msg["References"] = first
        msg["X-Arachne-Reference"] = rendered.reference
        msg["Content-Language"] = rendered.language
        # Quoted-printable keeps the message 7-bit: no reliance on the server's 8BITMIME.
        msg.set_content(rendered.body_text, cte="quoted-printable")
        for index, report in enumerate(rendered.xarf_reports, 1):
            msg.add_attachment(
                json.dumps(report, indent=2, ensure_ascii=False).encode(),
                maintype="application",
                subtype="json",
                filename=xarf_filename(index),
            )
        return msg

    def deliver(self, rendered: RenderedNotice, recipient: str) -> DeliveryReceipt:
        where = self.where
        if not is_address(recipient):
            raise DeliveryError(
                f"{where}: {recipient!r} is not a plain email address", transient=False
            )
        try:
            msg = self.build_message(rendered, recipient)
            data = msg.as_bytes(policy=msg.policy.clone(linesep="\r\n"))
        except (ValueError, TypeError) as exc:  # e.g. a header with a line break in it
            raise DeliveryError(
                f"{where}: cannot build the message to {recipient!r}: {exc}", transient=False
            ) from exc
        try:
            smtp = self._connect()
        except smtplib.SMTPConnectError as exc:
            raise self._reply_error("greeting", exc.smtp_code, exc.smtp_error) from exc
        except (smtplib.SMTPException, OSError) as exc:
            raise self._connection_error(exc, "connecting") from exc
        try:
            return self._send(smtp, recipient, data)
        except DeliveryError:
            raise
        except smtplib.SMTPServerDisconnected as exc:
            raise self._connection_error(exc, "in the session") from exc
        except smtplib.SMTPResponseException as exc:  # auth, DATA, STARTTLS replies
            raise self._reply_error(type(exc).__name__, exc.smtp_code, exc.smtp_error) from exc
        except smtplib.SMTPNotSupportedError as exc:
            raise DeliveryError(f"{where}: {exc}", transient=False) from exc
        except (smtplib.SMTPException, OSError) as exc:
            raise self._connection_error(exc, "in the session") from exc
        finally:
            with contextlib.suppress(OSError):
                smtp.close()

    def _tls(self) -> ssl.SSLContext:
        return self.tls_context or ssl.create_default_context()

    def _connect(self) -> smtplib.SMTP:
        if self.implicit_tls:
            return smtplib.SMTP_SSL(self.host, self.port, timeout=self.timeout, context=self._tls())
        return smtplib.SMTP(self.host, self.port, timeout=self.timeout)

    def _send(self, smtp: smtplib.SMTP, recipient: str, data: bytes) -> DeliveryReceipt:
        smtp.ehlo()
        if self.starttls:
            if not smtp.has_extn("starttls"):
                raise DeliveryError(
                    f"{self.where}: the server does not offer STARTTLS; not sending in the clear",
                    transient=False,
                )
            smtp.starttls(context=self._tls())
            smtp.ehlo()
        if self.user:
            smtp.login(self.user, self.password or "")
        code, reply = smtp.mail(self.sender)
        if code != 250:
            raise self._reply_error(f"sender {self.sender} refused", code, reply)
        code, reply = smtp.rcpt(recipient)
        if code not in (250, 251):
            raise self._reply_error(f"recipient {recipient} refused", code, reply)
        # data() raises only when DATA itself is refused; the final reply is ours to check.
        code, reply = smtp.data(data)
        if code != 250:
            raise self._reply_error("message refused after DATA", code, reply)
        accepted = datetime.now(UTC)
        # Accepted is accepted: a lost QUIT must not turn into a resend.
        with contextlib.suppress(smtplib.SMTPException, OSError):
            smtp.quit()
        return DeliveryReceipt("smtp", accepted, f"{code} {_text(reply)}")

    def _reply_error(self, what: str, code: int, reply: bytes | str) -> DeliveryError:
        # 4xx: try again later (greylisting, full mailbox, rate limits); 5xx: it will not work.
        return DeliveryError(
            f"{self.where}: {what}: {code} {_text(reply)}", transient=not 500 <= code < 600
        )

    def _connection_error(self, exc: smtplib.SMTPException | OSError, when: str) -> DeliveryError:
        where = self.where
        if isinstance(exc, ssl.SSLCertVerificationError):
            return DeliveryError(
                f"{where}: TLS certificate not trusted: {exc.verify_message}", transient=False
            )
        if isinstance(exc, ssl.SSLError):  # protocol mismatch, e.g. smtp_ssl to a plain port
            return DeliveryError(f"{where}: TLS failed {when}: {exc}", transient=False)
        # smtplib reports a read timeout as SMTPServerDisconnected; the timeout is the news.
        if isinstance(exc, TimeoutError) or isinstance(exc.__context__, TimeoutError):
            return DeliveryError(f"{where}: timed out after {self.timeout:g}s {when}")
        if isinstance(exc, ConnectionRefusedError):
            return DeliveryError(f"{where}: connection refused")
        if isinstance(exc, smtplib.SMTPServerDisconnected):
            return DeliveryError(f"{where}: the server closed the connection {when} ({exc})")
        return DeliveryError(f"{where}: {type(exc).__name__} {when}: {exc}")
