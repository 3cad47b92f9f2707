"""Who gets the notice for a host, and why.

Operator overrides first; then the CDN fronting the host; then DNS -> server IP -> the RDAP
network's abuse contact (IANA bootstrap, each registry's answer shape, referrals, a cache
per network range); then the domain's registrar, as the escalation target (or the first
recipient when nothing else answered). Every resolution keeps its chain of steps.
"""

from __future__ import annotations

from arachne.notices.contacts.bootstrap import Bootstrap, BootstrapInfo
from arachne.notices.contacts.cache import MemoryCache, StoreCache
from arachne.notices.contacts.cdn import CdnList, CdnMatch
from arachne.notices.contacts.dns import DnsAnswer, DnsLookup
from arachne.notices.contacts.http import Fetched, RdapHttp
from arachne.notices.contacts.model import NO_CONTACT, ChainStep, Contact, ContactResolver
from arachne.notices.contacts.names import normalise_host, registrable_domain, split_port
from arachne.notices.contacts.overrides import OverridesResolver, load_overrides
from arachne.notices.contacts.rdap import Answer, RdapLookup
from arachne.notices.contacts.resolver import (
    AbuseContactResolver,
    ChainResolver,
    default_resolver,
)

__all__ = [
    "NO_CONTACT",
    "AbuseContactResolver",
    "Answer",
    "Bootstrap",
    "BootstrapInfo",
    "CdnList",
    "CdnMatch",
    "ChainResolver",
    "ChainStep",
    "Contact",
    "ContactResolver",
    "DnsAnswer",
    "DnsLookup",
    "Fetched",
    "MemoryCache",
    "OverridesResolver",
    "RdapHttp",
    "RdapLookup",
    "StoreCache",
    "default_resolver",
    "load_overrides",
    "normalise_host",
    "registrable_domain",
    "split_port",
]
