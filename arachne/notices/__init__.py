"""Notices: resolve a host's abuse contact, render XARF v4 + text, deliver, record."""

from __future__ import annotations

from arachne.notices.contacts import (
    ChainResolver,
    Contact,
    ContactResolver,
    OverridesResolver,
    default_resolver,
)
from arachne.notices.deliver import Notifier, OutboxNotifier, SmtpNotifier
from arachne.notices.render import NoticeDraft, NoticeItem, RenderedNotice, render
from arachne.notices.send import NoticeOutcome, SendReport, send_notices

__all__ = [
    "ChainResolver",
    "Contact",
    "ContactResolver",
    "NoticeDraft",
    "NoticeItem",
    "NoticeOutcome",
    "Notifier",
    "OutboxNotifier",
    "OverridesResolver",
    "RenderedNotice",
    "SendReport",
    "SmtpNotifier",
    "default_resolver",
    "render",
    "send_notices",
]
