"""What every delivery channel shares: the Notifier protocol and its receipt.

A channel gets the rendered text and XARF reports only; there is no way to hand it image
bytes. ``deliver`` returns a receipt once the other side has accepted the notice, or raises
DeliveryError (``transient`` says whether a later retry may succeed).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from arachne.notices.render import RenderedNotice


@dataclass(frozen=True)
class DeliveryReceipt:
    channel: str
    accepted_at: datetime
    response: str  # what the other side said: "250 2.0.0 Ok: queued as ...", "HTTP 202"


class Notifier(Protocol):
    channel: str
    preview: bool  # True: nothing leaves the machine (outbox); never marks a notice sent

    def deliver(self, rendered: RenderedNotice, recipient: str) -> DeliveryReceipt:
        """Hand the notice over, or raise DeliveryError."""
        ...
