"""Who a notice is from: the hotline's name and addresses, checked before any real send.

Providers act on notices from identifiable senders, and the DSA asks for the submitter's
name and address, so a real send refuses the shipped ``.invalid`` placeholder and a missing
organisation name. Previews (dry runs, the outbox) and the demo get placeholders instead.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from arachne.errors import ConfigError

if TYPE_CHECKING:
    from arachne.settings import Settings

PREVIEW_ORG = "Arachne (preview: ARACHNE_REPORTER_ORG not set)"
"""Organisation shown in previews and the demo when none is configured."""

# Deliberately plain: one @, an LDH hostname with a dot. XARF needs contact to be an email
# and domain a hostname; anything fancier is rejected here rather than by a receiver.
_LABEL = r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)"
_HOSTNAME = re.compile(rf"^{_LABEL}(\.{_LABEL})+$")
_LOCAL = re.compile(r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}$")


@dataclass(frozen=True)
class SenderIdentity:
    org: str  # reporter org in the text and in XARF reporter/sender
    email: str  # where providers reply (Reply-To, XARF contact)
    from_addr: str  # envelope sender and From header


def is_hostname(name: str) -> bool:
    return len(name) <= 253 and bool(_HOSTNAME.match(name))


def is_address(addr: str) -> bool:
    local, at, domain = addr.rpartition("@")
    return bool(at) and bool(_LOCAL.match(local)) and is_hostname(domain)


def address_domain(addr: str) -> str:
    return addr.rpartition("@")[2].lower()


def _placeholder(addr: str) -> bool:
    return address_domain(addr).rstrip(".").endswith(".invalid")


def sender_identity(settings: Settings, *, preview: bool) -> SenderIdentity:
    """The identity notices go out under; ConfigError when a real send lacks one.

    ``preview`` (dry run, outbox) and ``settings.demo_mode`` accept the placeholders; a
    malformed address is refused in every mode, since no valid XARF could carry it.
    """
    from_addr = settings.smtp_from.strip()
    email = (settings.reporter_email or from_addr).strip()
    org = (settings.reporter_org or "").strip()
    for name, addr in (("ARACHNE_SMTP_FROM", from_addr), ("ARACHNE_REPORTER_EMAIL", email)):
        if not is_address(addr):
            raise ConfigError(f"{name}: {addr!r} is not a plain email address (name@host.tld)")
    if preview or settings.demo_mode:
        return SenderIdentity(org or PREVIEW_ORG, email, from_addr)
    problems = []
    if not org:
        problems.append("ARACHNE_REPORTER_ORG (the hotline's name) is not set")
    if _placeholder(from_addr):
        problems.append(f"ARACHNE_SMTP_FROM is the placeholder {from_addr!r}")
    if _placeholder(email):
        problems.append(f"ARACHNE_REPORTER_EMAIL (defaults to smtp_from) is {email!r}")
    if problems:
        raise ConfigError(
            "real notices need the hotline's identity: "
            + "; ".join(problems)
            + ". Set them, or preview with the outbox channel or a dry run."
        )
    return SenderIdentity(org, email, from_addr)
