"""End to end: the demo site crawled by Scrapy, matched by 2 rq worker processes, stored,
and noticed to a real local SMTP server — on the embedded Valkey + SQLite, and on the
machine's Redis + PostgreSQL."""

from __future__ import annotations

import base64
import email.message
import json
import urllib.request
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import LargeBinary, inspect, select

from arachne.crawler.scope import Scope
from arachne.demo.mailbox import Mailbox
from arachne.demo.site import DemoSiteThread, SiteManifest
from arachne.matcher.variants import unpack
from arachne.notices.send import send_notices
from arachne.queue.connection import redis_from_url, redis_url_for
from arachne.runner import run_campaign
from arachne.settings import Settings
from arachne.store.campaigns import create_campaign
from arachne.store.db import Store
from arachne.store.hashlists import import_list
from arachne.store.models import Base, Sighting
from arachne.store.summary import campaign_matches, campaign_summary

pytestmark = pytest.mark.e2e


def _run(settings: Settings, manifest: SiteManifest, mailbox: Mailbox) -> dict[str, Any]:
    store = Store.open(settings)
    list_file = settings.data_dir / "known.txt"
    list_file.write_text(manifest.known_list_text)
    import_list(store, "known", list_file)
    scope = Scope.for_seeds([manifest.seed_url], manifest.host_names, max_depth=8, max_pages=500)
    with store.session() as session:
        create_campaign(session, "e2e", [manifest.seed_url], scope.as_json())
    with redis_url_for(settings) as url:
        summary = run_campaign(
            settings, store, redis_from_url(url), url, "e2e", workers=2, interval=0.5
        )
    first = send_notices(store, settings, "e2e")
    second = send_notices(store, settings, "e2e")
    with store.session() as session:
        matched = campaign_matches(session, "e2e")
        errors = {s.image_url: s.error for s in session.scalars(select(Sighting)) if s.error}
        final = campaign_summary(session, "e2e", None)
    return {
        "summary": summary,
        "final": final,
        "matched": matched,
        "errors": errors,
        "first": first,
        "second": second,
        "store": store,
    }


def _served_samples(manifest: SiteManifest) -> list[bytes]:
    """Slices from the middle of served images: what would be on disk if bytes leaked."""
    urls = (
        sorted(manifest.expected_matches)[:20]
        + sorted(
            set(manifest.image_urls) - set(manifest.expected_matches) - set(manifest.bad_urls)
        )[:20]
    )
    samples = []
    for url in urls:
        with urllib.request.urlopen(url, timeout=10) as resp:
            body = resp.read()
        mid = len(body) // 2
        samples.append(body[mid : mid + 48])
    return samples


# The one binary column: packed PDQ hashes (matcher/variants.py), checked row by row below.
HASH_BLOBS = {("images", "pdq_queries")}


def _assert_no_image_bytes(data_dir: Path, store: Store, samples: list[bytes]) -> None:
    for table in Base.metadata.sorted_tables:
        for column in table.columns:
            if isinstance(column.type, LargeBinary):
                assert (table.name, column.name) in HASH_BLOBS, f"{table.name}.{column.name}"
    with store.engine.connect() as conn:
        blobs = [bytes(b) for (b,) in conn.exec_driver_sql(
            "SELECT pdq_queries FROM images WHERE pdq_queries IS NOT NULL")]  # fmt: skip
    assert blobs, "matched images keep their packed PDQ queries"
    for blob in blobs:
        unpack(blob)  # a version-1 header and whole 32-byte hashes, or ValueError
    db_columns = {
        t: [c["name"] for c in inspect(store.engine).get_columns(t)]
        for t in inspect(store.engine).get_table_names()
    }
    assert "sightings" in db_columns and "images" in db_columns
    encoded = [(s, s.hex(), base64.b64encode(s).decode()[:40]) for s in samples]
    files = [p for p in data_dir.rglob("*") if p.is_file()]
    assert files, "the data directory should hold the store or the Valkey files"
    for path in files:
        content = path.read_bytes()
        for raw, hexed, b64 in encoded:
            assert raw not in content, f"image bytes found in {path}"
            assert hexed.encode() not in content and b64.encode() not in content, path
    with store.engine.connect() as conn:
        for table in db_columns:
            for row in conn.exec_driver_sql(f"SELECT * FROM {table}"):
                cells = " ".join(str(v) for v in row)
                for _raw, hexed, b64 in encoded:
                    assert hexed not in cells and b64 not in cells, f"image content in {table}"


def _check(result: dict[str, Any], manifest: SiteManifest, mailbox: Mailbox) -> None:
    matched = {m["url"]: m["kind"] for m in result["matched"]}
    assert set(matched) == set(manifest.expected_matches), "matched URL set differs from truth"
    assert matched == manifest.expected_matches, "exact/near classification differs"
    assert {"exact", "near"} <= set(matched.values())

    # Every bad input is recorded with its reason; nothing crashed the campaign.
    for url, reason in manifest.bad_urls.items():
        assert result["errors"].get(url) == reason, url
    summary = result["summary"]
    assert summary["status"] == "done" and summary["crawl_exit_code"] == 0
    assert summary["jobs_failed"] == 0
    assert summary["pages"] >= len(manifest.pages)
    # Every image URL on the content pages was fetched and recorded exactly once.
    assert result["final"]["images_recorded"] >= len(manifest.image_urls)

    # One notice per host serving matches, to that host's contact, listing exactly its URLs.
    by_host: dict[str, set[str]] = defaultdict(set)
    for url in manifest.expected_matches:
        by_host[url.split("/")[2].split(":")[0]].add(url)
    assert result["first"].sent == len(by_host) and result["first"].failed == 0
    assert result["second"].sent == 0, "sending twice must send nothing new"
    messages: list[email.message.Message] = mailbox.messages
    assert len(messages) == len(by_host)
    for msg in messages:
        # write_contacts gives host_names[i] the address abuse@hosting-<a+i>.example.
        index = ord(str(msg["To"]).split("@hosting-")[1][0]) - ord("a")
        host = manifest.host_names[index]
        assert host in by_host
        body = "\n".join(_body(msg))
        for url in by_host[host]:
            assert url in body
        other = {u for h, us in by_host.items() if h != host for u in us}
        assert not any(u in body for u in other), "a notice lists another host's URLs"
        for part in msg.walk():
            assert not part.get_content_type().startswith("image/"), "notice carries media"
            if part.get_content_type() == "application/json":
                xarf = json.loads(part.get_payload(decode=True))
                assert "csam" in json.dumps(xarf).lower()


def _body(msg: email.message.Message) -> list[str]:
    out = []
    for part in msg.walk():
        if part.get_content_type() == "text/plain":
            out.append(part.get_payload(decode=True).decode("utf-8", "replace"))
    return out


@pytest.fixture(scope="module")
def site() -> Any:
    from tests.conftest import PHOTOS

    with DemoSiteThread(PHOTOS, pages=60, images_per_page=5) as manifest:
        yield manifest


def write_contacts(path: Path, manifest: SiteManifest) -> None:
    """An operator overrides file for the demo hosts: host -> abuse@hosting-<a+i>.example."""
    lines = ["[hosts]"]
    for i, host in enumerate(manifest.host_names):
        lines.append(f'"{host}" = {{ email = "abuse@hosting-{chr(97 + i)}.example" }}')
    path.write_text("\n".join(lines) + "\n")


def _settings(tmp_path: Path, mailbox: Mailbox, manifest: SiteManifest, **extra: Any) -> Settings:
    contacts = tmp_path / "contacts.toml"
    write_contacts(contacts, manifest)
    return Settings(
        data_dir=tmp_path / "data",
        contacts_file=contacts,
        reporter_org="E2E Test Hotline",
        smtp_from="notices@hotline.example",
        smtp_host="127.0.0.1",
        smtp_port=mailbox.port,
        fetch_timeout=10,
        batch_size=50,
        allow_private_networks=True,  # the demo site is on loopback
        **extra,
    )


def test_campaign_on_embedded_valkey_and_sqlite(tmp_path: Path, site: SiteManifest) -> None:
    with Mailbox() as mailbox:
        settings = _settings(tmp_path, mailbox, site)
        (settings.data_dir).mkdir(parents=True)
        assert settings.redis_url is None and settings.db_url.startswith("sqlite")
        result = _run(settings, site, mailbox)
        _check(result, site, mailbox)
        # Valkey persisted its queue state in the data directory (append-only file).
        assert list((settings.data_dir / "valkey").rglob("*.aof")), "no append-only file"
        _assert_no_image_bytes(settings.data_dir, result["store"], _served_samples(site))


def test_campaign_on_redis_and_postgresql(
    tmp_path: Path, site: SiteManifest, redis_url: str, postgres_url: str
) -> None:
    with Mailbox() as mailbox:
        settings = _settings(
            tmp_path, mailbox, site, redis_url=redis_url, database_url=postgres_url
        )
        settings.data_dir.mkdir(parents=True)
        result = _run(settings, site, mailbox)
        assert result["store"].engine.dialect.name == "postgresql"
        _check(result, site, mailbox)
        _assert_no_image_bytes(settings.data_dir, result["store"], _served_samples(site))
