"""Delivery channels against real loopback servers: aiosmtpd (plain, STARTTLS, TLS, AUTH,
per-recipient refusals, a dropped connection), an aiohttp webhook receiver, the outbox."""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import hmac
import ipaddress
import json
import socket
import ssl
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
import xarf
from aiohttp import web
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from arachne.demo.mailbox import Mailbox
from arachne.errors import ConfigError, DeliveryError
from arachne.notices.deliver import (
    OutboxNotifier,
    SmtpNotifier,
    WebhookNotifier,
    build_notifier,
)
from arachne.notices.render import NoticeDraft, NoticeItem, RenderedNotice, render
from arachne.notices.sender import PREVIEW_ORG, sender_identity
from arachne.notices.webhook import REFERENCE_HEADER, SIGNATURE_HEADER
from arachne.settings import Settings

T0 = dt.datetime(2026, 11, 25, 12, 0, tzinfo=dt.UTC)
SENDER = "notices@hotline.example"
RCPT = "abuse@host-a.example"
SECRET = "webhook-test-secret"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def notice(reference: str = "ARN-0123456789ab", **kw: Any) -> RenderedNotice:
    items = tuple(
        NoticeItem(
            url=f"http://host-a.test/img/{n}.jpg",
            page_url="http://host-a.test/gallery.html",
            sha256=f"{n}" * 64,
            md5="c" * 32,
            pdq=None,
            match_kind="exact",
            list_names=("demo-list",),
            detected_at=T0,
        )
        for n in (1, 2)
    )
    draft = NoticeDraft(
        reference, "host-a.test", RCPT, items, "Example Hotline", "reports@hotline.example", **kw
    )
    return render(draft)


def smtp_notifier(port: int, **kw: Any) -> SmtpNotifier:
    kw.setdefault("timeout", 5)
    return SmtpNotifier("127.0.0.1", port, SENDER, reply_to="reports@hotline.example", **kw)


# --- a configurable aiosmtpd handler ------------------------------------------------


@dataclass
class Handler:
    rcpt_replies: dict[str, str] = field(default_factory=dict)  # address -> "450 ..." etc.
    mail_reply: str | None = None
    data_reply: str = "250 2.0.0 Ok: queued as TEST1"
    drop_in_data: bool = False
    messages: list[EmailMessage] = field(default_factory=list)
    tls_seen: list[bool] = field(default_factory=list)

    async def handle_MAIL(  # noqa: N802
        self, server: Any, session: Any, envelope: Any, address: str, options: Any
    ) -> str:
        if self.mail_reply:
            return self.mail_reply
        envelope.mail_from = address
        return "250 OK"

    async def handle_RCPT(  # noqa: N802
        self, server: Any, session: Any, envelope: Any, address: str, options: Any
    ) -> str:
        if address in self.rcpt_replies:
            return self.rcpt_replies[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        if self.drop_in_data:
            # The whole message arrived, the final reply never does: the ambiguous case.
            server.transport.abort()
            return "250 never heard"
        self.tls_seen.append(server.transport.get_extra_info("ssl_object") is not None)
        msg = message_from_bytes(envelope.content, policy=policy.default)
        self.messages.append(msg)  # type: ignore[arg-type]
        return self.data_reply


@pytest.fixture
def server() -> Iterator[tuple[Handler, int]]:
    handler, port = Handler(), free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield handler, port
    finally:
        controller.stop()


@dataclass(frozen=True)
class Tls:
    server: ssl.SSLContext
    client: ssl.SSLContext


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Tls:
    """A self-signed certificate for 127.0.0.1, trusted by the client context only."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "arachne test SMTP")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5))
        .not_valid_after(dt.datetime.now(dt.UTC) + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    folder = tmp_path_factory.mktemp("tls")
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    (folder / "cert.pem").write_bytes(cert_pem)
    (folder / "key.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(folder / "cert.pem", folder / "key.pem")
    return Tls(server_ctx, ssl.create_default_context(cadata=cert_pem.decode()))


def authenticator(seen: list[tuple[bytes, bytes]]) -> Any:
    def check(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> Any:
        assert isinstance(data, LoginPassword)
        seen.append((data.login, data.password))
        return AuthResult(success=data.password == b"s3cret", handled=False)

    return check


# --- SMTP ---------------------------------------------------------------------------


def test_one_message_with_the_text_and_one_xarf_file_per_report() -> None:
    rendered = notice()
    with Mailbox() as mailbox:
        receipt = smtp_notifier(mailbox.port, from_name="Example Hotline").deliver(rendered, RCPT)
        assert mailbox.envelopes == [(SENDER, [RCPT])]
        raw = mailbox.messages[0].as_bytes()
    assert receipt.channel == "smtp" and receipt.response.startswith("250")
    assert receipt.accepted_at.tzinfo is not None
    msg = message_from_bytes(raw, policy=policy.default)
    assert msg["From"] == f"Example Hotline <{SENDER}>"
    assert msg["To"] == RCPT and msg["Reply-To"] == "reports@hotline.example"
    assert msg["Subject"] == rendered.subject
    assert msg["Message-ID"] == "<ARN-0123456789ab@hotline.example>"
    assert msg["X-Arachne-Reference"] == "ARN-0123456789ab"
    assert msg["In-Reply-To"] is None
    body = msg.get_body(preferencelist=("plain",))
    assert body is not None and body.get_content() == rendered.body_text
    parts = list(msg.iter_attachments())
    assert [p.get_filename() for p in parts] == ["xarf-1.json", "xarf-2.json"]
    assert all(p.get_content_type() == "application/json" for p in parts)
    for part, report in zip(parts, rendered.xarf_reports, strict=True):
        doc = json.loads(part.get_content())
        assert doc == report
        assert xarf.parse(doc).report is not None  # each file feeds a v4 parser as it is
    # Never media: nothing but the text and the JSON reports.
    assert {p.get_content_maintype() for p in msg.walk()} == {"multipart", "text", "application"}


def test_message_id_is_stable_and_reminders_thread_onto_the_first(
    server: tuple[Handler, int],
) -> None:
    handler, port = server
    smtp_notifier(port).deliver(notice(), RCPT)
    smtp_notifier(port).deliver(notice(), RCPT)  # a retry of the same notice
    later = notice("ARN-222222222222", cycle=1, first_reference="ARN-0123456789ab")
    smtp_notifier(port).deliver(later, RCPT)
    first, retry, reminder = handler.messages
    assert first["Message-ID"] == retry["Message-ID"] == "<ARN-0123456789ab@hotline.example>"
    assert reminder["Message-ID"] == "<ARN-222222222222@hotline.example>"
    assert reminder["In-Reply-To"] == reminder["References"] == first["Message-ID"]


@pytest.mark.parametrize(
    ("reply", "transient"),
    [("450 4.2.1 Mailbox busy, try later", True), ("550 5.1.1 No such user here", False)],
)
def test_recipient_refused_says_code_and_text(
    server: tuple[Handler, int], reply: str, transient: bool
) -> None:
    handler, port = server
    handler.rcpt_replies[RCPT] = reply
    with pytest.raises(DeliveryError) as err:
        smtp_notifier(port).deliver(notice(), RCPT)
    assert err.value.transient is transient
    assert f"SMTP 127.0.0.1:{port}" in str(err.value)
    assert f"recipient {RCPT} refused: {reply}" in str(err.value)
    assert handler.messages == []


@pytest.mark.parametrize(
    ("reply", "transient"),
    [("451 4.3.0 Temporary failure", True), ("554 5.7.1 Rejected by policy", False)],
)
def test_data_refused(server: tuple[Handler, int], reply: str, transient: bool) -> None:
    handler, port = server
    handler.data_reply = reply
    with pytest.raises(DeliveryError, match=reply) as err:
        smtp_notifier(port).deliver(notice(), RCPT)
    assert err.value.transient is transient


def test_sender_refused_is_permanent(server: tuple[Handler, int]) -> None:
    handler, port = server
    handler.mail_reply = "553 5.7.1 Sender address rejected"
    with pytest.raises(DeliveryError, match=f"sender {SENDER} refused: 553") as err:
        smtp_notifier(port).deliver(notice(), RCPT)
    assert err.value.transient is False


def test_server_dropping_the_connection_mid_data_is_transient(
    server: tuple[Handler, int],
) -> None:
    handler, port = server
    handler.drop_in_data = True
    with pytest.raises(DeliveryError, match="closed the connection") as err:
        smtp_notifier(port).deliver(notice(), RCPT)
    assert err.value.transient is True


def test_connection_refused_is_transient() -> None:
    port = free_port()
    with pytest.raises(DeliveryError, match=f"127.0.0.1:{port}: connection refused") as err:
        smtp_notifier(port).deliver(notice(), RCPT)
    assert err.value.transient is True


def test_silent_server_times_out_transiently() -> None:
    with socket.socket() as listener:  # accepts connections (backlog) but never greets
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        port = listener.getsockname()[1]
        with pytest.raises(DeliveryError, match="timed out after 0.3s") as err:
            smtp_notifier(port, timeout=0.3).deliver(notice(), RCPT)
    assert err.value.transient is True


def test_header_injection_and_bad_addresses_are_refused(server: tuple[Handler, int]) -> None:
    handler, port = server
    for bad in ("a@b.example\r\nBcc: x@y.example", "no-at-sign", "a b@c.example"):
        with pytest.raises(DeliveryError) as err:
            smtp_notifier(port).deliver(notice(), bad)
        assert err.value.transient is False
    assert handler.messages == []


def test_starttls_not_offered_never_falls_back_to_clear(server: tuple[Handler, int]) -> None:
    handler, port = server
    with pytest.raises(DeliveryError, match="does not offer STARTTLS") as err:
        smtp_notifier(port, starttls=True).deliver(notice(), RCPT)
    assert err.value.transient is False
    assert handler.messages == []


def test_starttls_with_auth(tls: Tls) -> None:
    handler, port, seen = Handler(), free_port(), []
    controller = Controller(
        handler,
        hostname="127.0.0.1",
        port=port,
        tls_context=tls.server,
        require_starttls=True,
        auth_required=True,
        authenticator=authenticator(seen),
    )
    controller.start()
    try:
        good = smtp_notifier(
            port, starttls=True, user="u", password="s3cret", tls_context=tls.client
        )
        assert good.deliver(notice(), RCPT).response.startswith("250")
        bad = smtp_notifier(port, starttls=True, user="u", password="no", tls_context=tls.client)
        with pytest.raises(DeliveryError, match="535") as err:
            bad.deliver(notice(), RCPT)
        assert err.value.transient is False
        # The default trust store does not know the test certificate.
        with pytest.raises(DeliveryError, match="certificate not trusted") as err:
            smtp_notifier(port, starttls=True, user="u", password="s3cret").deliver(notice(), RCPT)
        assert err.value.transient is False
    finally:
        controller.stop()
    # smtplib tries each offered mechanism (PLAIN, LOGIN) before giving up on a password.
    assert seen[0] == (b"u", b"s3cret") and set(seen[1:]) == {(b"u", b"no")}
    assert handler.tls_seen == [True]


def test_implicit_tls(tls: Tls) -> None:
    handler, port = Handler(), free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port, ssl_context=tls.server)
    controller.start()
    try:
        receipt = smtp_notifier(port, implicit_tls=True, tls_context=tls.client).deliver(
            notice(), RCPT
        )
    finally:
        controller.stop()
    assert receipt.response == "250 2.0.0 Ok: queued as TEST1"
    assert handler.tls_seen == [True]


def test_implicit_tls_to_a_plain_server_is_a_permanent_error(
    server: tuple[Handler, int], tls: Tls
) -> None:
    _, port = server
    with pytest.raises(DeliveryError, match="TLS") as err:
        smtp_notifier(port, implicit_tls=True, tls_context=tls.client).deliver(notice(), RCPT)
    assert err.value.transient is False


def test_starttls_and_implicit_tls_together_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="smtp_ssl"):
        SmtpNotifier("127.0.0.1", 25, SENDER, starttls=True, implicit_tls=True)


# --- sender identity and channel choice ---------------------------------------------


def real(**kw: Any) -> Settings:
    base: dict[str, Any] = {
        "reporter_org": "Example Hotline",
        "smtp_from": SENDER,
        "reporter_email": "reports@hotline.example",
    }
    return Settings(**(base | kw))


def test_sender_identity_for_real_sends() -> None:
    ident = sender_identity(real(), preview=False)
    assert (ident.org, ident.email, ident.from_addr) == (
        "Example Hotline",
        "reports@hotline.example",
        SENDER,
    )
    assert sender_identity(real(reporter_email=None), preview=False).email == SENDER


@pytest.mark.parametrize(
    ("update", "names"),
    [
        ({"smtp_from": "arachne@hotline.invalid", "reporter_email": None}, "ARACHNE_SMTP_FROM"),
        ({"reporter_org": None}, "ARACHNE_REPORTER_ORG"),
        ({"reporter_email": "r@hotline.invalid"}, "ARACHNE_REPORTER_EMAIL"),
    ],
)
def test_real_sends_refuse_missing_or_placeholder_identity(
    update: dict[str, Any], names: str
) -> None:
    with pytest.raises(ConfigError, match=names):
        sender_identity(real(**update), preview=False)
    with pytest.raises(ConfigError, match=names):
        SmtpNotifier.from_settings(real(**update))


def test_previews_and_the_demo_get_placeholders() -> None:
    bare = Settings()  # the shipped defaults: no org, smtp_from at hotline.invalid
    ident = sender_identity(bare, preview=True)
    assert ident.org == PREVIEW_ORG and ident.email == ident.from_addr == bare.smtp_from
    assert sender_identity(Settings(demo_mode=True), preview=False).org == PREVIEW_ORG
    notifier = SmtpNotifier.from_settings(Settings(demo_mode=True))
    assert notifier.sender == "arachne@hotline.invalid"
    with pytest.raises(ConfigError, match="not a plain email address"):
        sender_identity(Settings(smtp_from="nobody"), preview=True)


def test_build_notifier(tmp_path: Path) -> None:
    smtp = build_notifier(real(smtp_host="mail.example", smtp_port=587, smtp_starttls=True))
    assert isinstance(smtp, SmtpNotifier) and smtp.starttls and smtp.port == 587
    assert smtp.reply_to == "reports@hotline.example" and smtp.from_name == "Example Hotline"
    hook = build_notifier(
        real(notice_channel="webhook", webhook_url="https://h.example/x", webhook_secret="k")
    )
    assert isinstance(hook, WebhookNotifier) and not hook.preview
    outbox = build_notifier(Settings(outbox_dir=tmp_path), channel="outbox")
    assert isinstance(outbox, OutboxNotifier) and outbox.preview


@pytest.mark.parametrize(
    ("update", "message"),
    [
        ({"notice_channel": "fax"}, "unknown notice channel 'fax'"),
        ({"notice_channel": "outbox"}, "ARACHNE_OUTBOX_DIR"),
        ({"notice_channel": "webhook"}, "ARACHNE_WEBHOOK_URL"),
        ({"notice_channel": "webhook", "webhook_url": "https://h.example/"}, "SECRET"),
        (
            {"notice_channel": "webhook", "webhook_url": "ftp://h.example/", "webhook_secret": "k"},
            "not an http",
        ),
        ({"notice_channel": "smtp", "reporter_org": None}, "ARACHNE_REPORTER_ORG"),
    ],
)
def test_build_notifier_config_errors(update: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        build_notifier(real(**update))


# --- webhook ------------------------------------------------------------------------


@dataclass
class Receiver:
    url: str
    requests: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    status: int = 202
    text: str = ""
    hang: bool = False  # hold the answer until the test is over
    release: asyncio.Event = field(default_factory=asyncio.Event)


@pytest_asyncio.fixture
async def receiver() -> AsyncIterator[Receiver]:
    app = web.Application()
    state = Receiver(url="")

    async def hook(request: web.Request) -> web.Response:
        state.requests.append((dict(request.headers), await request.read()))
        if state.hang:
            await state.release.wait()
        return web.Response(status=state.status, text=state.text)

    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    state.url = f"http://127.0.0.1:{port}/hook"
    try:
        yield state
    finally:
        state.release.set()
        await runner.cleanup()


@pytest.mark.asyncio
async def test_webhook_posts_signed_json(receiver: Receiver) -> None:
    rendered = notice()
    notifier = WebhookNotifier(receiver.url, SECRET, timeout=5)
    receipt = await asyncio.to_thread(notifier.deliver, rendered, RCPT)
    assert (receipt.channel, receipt.response) == ("webhook", "HTTP 202")
    ((headers, body),) = receiver.requests
    expected = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    assert headers[SIGNATURE_HEADER] == f"sha256={expected}"
    assert headers[REFERENCE_HEADER] == "ARN-0123456789ab"
    assert headers["Content-Type"].startswith("application/json")
    doc = json.loads(body)
    assert set(doc) == {"reference", "recipient", "subject", "body", "xarf", "sent_at"}
    assert doc["recipient"] == RCPT and doc["body"] == rendered.body_text
    assert doc["xarf"] == list(rendered.xarf_reports)
    assert all(xarf.parse(r).report is not None for r in doc["xarf"])


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("status", "transient"), [(500, True), (503, True), (429, True), (400, False), (404, False)]
)
async def test_webhook_statuses(receiver: Receiver, status: int, transient: bool) -> None:
    receiver.status, receiver.text = status, "nope\nnot today"
    notifier = WebhookNotifier(receiver.url, SECRET, timeout=5)
    with pytest.raises(DeliveryError, match=f"HTTP {status}: nope not today") as err:
        await asyncio.to_thread(notifier.deliver, notice(), RCPT)
    assert err.value.transient is transient


@pytest.mark.asyncio
async def test_webhook_timeout_is_transient(receiver: Receiver) -> None:
    receiver.hang = True
    notifier = WebhookNotifier(receiver.url, SECRET, timeout=0.3)
    with pytest.raises(DeliveryError, match="timed out after 0.3s") as err:
        await asyncio.to_thread(notifier.deliver, notice(), RCPT)
    assert err.value.transient is True


@pytest.mark.asyncio
async def test_webhook_refused_connection_even_from_inside_a_running_loop() -> None:
    # Called straight from a coroutine: deliver runs its own loop on a helper thread.
    notifier = WebhookNotifier(f"http://127.0.0.1:{free_port()}/hook", SECRET, timeout=5)
    with pytest.raises(DeliveryError, match="webhook http://127.0.0.1") as err:
        notifier.deliver(notice(), RCPT)
    assert err.value.transient is True


# --- outbox -------------------------------------------------------------------------


def test_outbox_is_a_preview_writing_one_json_per_notice(tmp_path: Path) -> None:
    outbox = OutboxNotifier(tmp_path / "outbox")
    assert outbox.preview is True
    rendered = notice()
    receipt = outbox.deliver(rendered, RCPT)
    outbox.deliver(rendered, RCPT)  # a retry replaces, never duplicates
    outbox.deliver(notice("ARN-ffffffffffff"), RCPT)
    files = sorted(p.name for p in (tmp_path / "outbox").iterdir())
    assert files == ["ARN-0123456789ab.json", "ARN-ffffffffffff.json"]
    assert receipt.channel == "outbox" and receipt.response.endswith("ARN-0123456789ab.json")
    record = json.loads((tmp_path / "outbox" / files[0]).read_text())
    assert record["xarf"] == list(rendered.xarf_reports)
    assert record["recipient"] == RCPT and record["language"] == "en"
    assert record["body"] == rendered.body_text


def test_unwritable_outbox_is_a_delivery_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(DeliveryError, match="outbox"):
        OutboxNotifier(blocker / "outbox").deliver(notice(), RCPT)
