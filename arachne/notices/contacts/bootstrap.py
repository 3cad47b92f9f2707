"""IANA's RDAP bootstrap (RFC 9224): which registry's RDAP server answers for an address
or a TLD. Loaded from a folder, a file or a URL; the dated snapshot in ``data/`` is the
fallback, ``<data_dir>/rdap-bootstrap/`` (written by ``arachne contacts update``) wins
over it, and ``settings.rdap_bootstrap`` over both.
"""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from arachne.errors import BootstrapError, ConfigError
from arachne.notices.contacts.http import Fetched
from arachne.settings import Settings

SHIPPED_DIR = Path(__file__).parent / "data"
IANA_BASE_URL = "https://data.iana.org/rdap/"
KINDS = ("ipv4", "ipv6", "dns")
UPDATE_DIR = "rdap-bootstrap"  # under settings.data_dir
SOURCE_FILE = "source.json"  # where and when a folder's files came from

Fetch = Callable[[str], Fetched]


@dataclass(frozen=True)
class BootstrapInfo:
    source: str  # the folder, file or URL read
    kind: str  # shipped | updated | configured
    date: str | None  # the snapshot's date (or the newest `publication` of its files)
    publications: dict[str, str] = field(default_factory=dict)  # kind -> publication

    def as_json(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "kind": self.kind,
            "date": self.date,
            "publications": dict(self.publications),
        }


class Bootstrap:
    """Longest-prefix match over the ipv4/ipv6 services, longest-suffix over dns."""

    def __init__(self, services: dict[str, list[Any]], info: BootstrapInfo) -> None:
        self.info = info
        # (version, prefix length) -> {network address as int: urls}
        self._nets: dict[tuple[int, int], dict[int, list[str]]] = {}
        self._tlds: dict[str, list[str]] = {}
        for kind in KINDS:
            for keys, urls in services.get(kind, []):
                for key in keys:
                    if kind == "dns":
                        self._tlds[key.strip(".").lower()] = urls
                        continue
                    net = ipaddress.ip_network(key, strict=False)
                    bucket = self._nets.setdefault((net.version, net.prefixlen), {})
                    bucket[int(net.network_address)] = urls
        self._lengths = sorted(self._nets, key=lambda vl: -vl[1])

    def ip_base(self, ip: str) -> tuple[str, str] | None:
        """(matched prefix, RDAP base URL) for an address; None when no registry holds it."""
        addr = ipaddress.ip_address(ip)
        bits = addr.max_prefixlen
        for version, length in self._lengths:
            if version != addr.version:
                continue
            key = int(addr) >> (bits - length) << (bits - length)
            urls = self._nets[(version, length)].get(key)
            if urls:
                prefix = f"{ipaddress.ip_address(key)}/{length}"
                return prefix, _pick(urls)
        return None

    def domain_base(self, name: str) -> tuple[str, str] | None:
        """(matched TLD or suffix, RDAP base URL) for a domain name."""
        labels = name.strip(".").lower().split(".")
        for i in range(len(labels)):
            suffix = ".".join(labels[i:])
            urls = self._tlds.get(suffix)
            if urls:
                return suffix, _pick(urls)
        return None


def _pick(urls: list[str]) -> str:
    """HTTPS where the registry offers it; every base ends with a slash."""
    url = next((u for u in urls if u.startswith("https://")), urls[0])
    return url if url.endswith("/") else url + "/"


def location(settings: Settings) -> tuple[str, str]:
    """(where to read the bootstrap, kind): configured, else updated, else shipped."""
    if settings.rdap_bootstrap:
        return settings.rdap_bootstrap, "configured"
    updated = settings.data_dir / UPDATE_DIR
    if (updated / "ipv4.json").is_file():
        return str(updated), "updated"
    return str(SHIPPED_DIR), "shipped"


def load(where: str, kind: str, fetch: Fetch | None = None) -> Bootstrap:
    """A folder or URL ending in ``/`` holds ipv4.json/ipv6.json/dns.json; a single file
    (or file URL) may mix all three: each service is sorted by what its keys look like."""
    is_url = where.startswith(("http://", "https://"))
    services: dict[str, list[Any]] = {k: [] for k in KINDS}
    publications: dict[str, str] = {}
    meta: dict[str, Any] = {}
    if (is_url and where.endswith("/")) or (not is_url and Path(where).is_dir()):
        for name in KINDS:
            doc = _read(f"{where.rstrip('/')}/{name}.json", fetch, missing_ok=(name != "ipv4"))
            if doc is not None:
                services[name] = _services(where, name, doc)
                publications[name] = str(doc.get("publication", ""))
        if not is_url:
            meta_path = Path(where) / SOURCE_FILE
            if meta_path.is_file():
                meta = json.loads(meta_path.read_text())
    else:
        doc = _read(where, fetch, missing_ok=False)
        assert doc is not None
        for keys, urls in _services(where, "file", doc):
            services[_classify(keys)].append((keys, urls))
        publications["file"] = str(doc.get("publication", ""))
    date = meta.get("date") or max(publications.values(), default=None) or None
    return Bootstrap(services, BootstrapInfo(where, kind, date, publications))


def _classify(keys: list[str]) -> str:
    first = keys[0] if keys else ""
    if ":" in first:
        return "ipv6"
    return "ipv4" if "/" in first or first.replace(".", "").isdigit() else "dns"


def _read(where: str, fetch: Fetch | None, *, missing_ok: bool) -> dict[str, Any] | None:
    if where.startswith(("http://", "https://")):
        if fetch is None:
            raise ConfigError(f"rdap bootstrap {where}: a URL needs an HTTP client")
        got = fetch(where)
        if got.outcome == "not_found" and missing_ok:
            return None
        if got.doc is None:
            raise ConfigError(f"rdap bootstrap {where}: {got.outcome} ({got.detail})")
        return got.doc
    path = Path(where)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        if missing_ok:
            return None
        raise ConfigError(f"rdap bootstrap {where}: not found") from None
    except (OSError, ValueError) as exc:
        raise ConfigError(f"rdap bootstrap {where}: cannot read ({exc})") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"rdap bootstrap {where}: not a bootstrap file")
    return data


def _services(where: str, name: str, doc: dict[str, Any]) -> list[Any]:
    """Validated ``services``: a list of [[keys...], [urls...]]."""
    services = doc.get("services")
    bad = ConfigError(f"rdap bootstrap {where} ({name}): services must be [[keys], [urls]]")
    if not isinstance(services, list):
        raise bad
    out = []
    for entry in services:
        if not (isinstance(entry, list) and len(entry) >= 2):
            raise bad
        keys, urls = entry[0], entry[1]
        if not all(isinstance(x, str) for x in [*keys, *urls]) or not urls:
            raise bad
        if name != "dns":
            for key in keys:
                try:
                    if ":" in key or "/" in key or key.replace(".", "").isdigit():
                        ipaddress.ip_network(key, strict=False)
                except ValueError:
                    raise ConfigError(f"rdap bootstrap {where}: bad prefix {key!r}") from None
        out.append((list(keys), list(urls)))
    return out


def update(dest: Path, base_url: str, fetch: Fetch, *, today: str) -> BootstrapInfo:
    """Download ipv4.json, ipv6.json and dns.json from ``base_url`` into ``dest``.

    All three are fetched and validated before anything is written, then swapped in as one
    folder: a failure leaves the previous snapshot as it was.
    """
    base = base_url if base_url.endswith("/") else base_url + "/"
    docs: dict[str, dict[str, Any]] = {}
    for name in KINDS:
        got = fetch(base + f"{name}.json")
        if got.doc is None:
            raise BootstrapError(
                f"cannot download {base}{name}.json ({got.outcome}: {got.detail}); "
                "the current bootstrap snapshot is kept"
            )
        try:
            _services(base, name, got.doc)
        except ConfigError as exc:
            raise BootstrapError(f"{exc}; the current bootstrap snapshot is kept") from None
        docs[name] = got.doc
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".rdap-bootstrap-", dir=dest.parent))
    publications = {k: str(d.get("publication", "")) for k, d in docs.items()}
    for name, doc in docs.items():
        (staging / f"{name}.json").write_text(json.dumps(doc, indent=1) + "\n")
    meta = {"source": base, "date": today, "kind": "updated", "publications": publications}
    (staging / SOURCE_FILE).write_text(json.dumps(meta, indent=2) + "\n")
    old = dest.with_name(dest.name + ".old")
    if dest.exists():
        shutil.rmtree(old, ignore_errors=True)
        os.replace(dest, old)
    os.replace(staging, dest)
    shutil.rmtree(old, ignore_errors=True)
    return BootstrapInfo(str(dest), "updated", today, publications)
