"""`arachne demo`: the whole pipeline against the benign demo site, on one machine.

Embedded Valkey + SQLite under ``<data-dir>/demo``, the demo site on 127.0.0.2-4, a
local SMTP server and a local RDAP server (RIPE-, ARIN- and APNIC-shaped answers for the
three hosts, reached through a bootstrap file like IANA's), a demo known-hash list, a
campaign crawled by 2 workers, notices to the contacts RDAP names, a check of the matched
URL set against the site's ground truth, then some matched images taken down on the site,
one re-check, and the time to removal.
"""

from __future__ import annotations

import secrets
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import click
from sqlalchemy import select

import arachne
from arachne.crawler.frontier import forget_campaign
from arachne.crawler.scope import Scope
from arachne.demo.mailbox import Mailbox, free_port
from arachne.demo.rdap import RdapData, RdapServerThread, write_bootstrap
from arachne.demo.rdap_shapes import demo_networks
from arachne.demo.site import DemoSite, DemoSiteThread, SiteManifest
from arachne.errors import ConfigError
from arachne.notices.recheck import recheck_incidents
from arachne.notices.send import send_notices
from arachne.notices.stats import removal_stats
from arachne.queue.connection import redis_from_url, redis_url_for
from arachne.queue.stats import Stats
from arachne.report import print_progress, print_summary
from arachne.runner import run_campaign, signals_held
from arachne.settings import Settings
from arachne.store.campaigns import create_campaign, delete_campaign
from arachne.store.db import Store
from arachne.store.hashlists import import_list
from arachne.store.models import Host, User
from arachne.store.summary import campaign_matches, campaign_summary
from arachne.store.users import add_user, remove_user

CAMPAIGN = "demo"
LIST_NAME = "demo-known"


def find_photos(settings: Settings) -> Path:
    candidates = [settings.demo_photos_dir] if settings.demo_photos_dir else []
    repo = Path(arachne.__file__).resolve().parents[1]
    candidates += [
        repo.parent / "shared" / "data" / "photos",
        Path.cwd().parent / "shared/data/photos",
    ]
    for path in candidates:
        if path and path.is_dir() and any(path.iterdir()):
            return path
    raise ConfigError(
        "demo photos not found; set ARACHNE_DEMO_PHOTOS_DIR to a folder of benign photos "
        f"(looked in: {', '.join(str(c) for c in candidates)})"
    )


def demo_settings(settings: Settings, smtp_port: int, bootstrap: Path) -> Settings:
    demo_dir = settings.data_dir / "demo"
    return settings.model_copy(
        update={
            "data_dir": demo_dir,
            "contacts_file": None,  # contacts come from (local) RDAP, as in production
            "rdap_bootstrap": str(bootstrap),
            "smtp_host": "127.0.0.1",
            "smtp_port": smtp_port,
            "smtp_starttls": False,
            "smtp_ssl": False,
            "smtp_user": None,
            "smtp_password": None,
            "notice_channel": "smtp",
            "reporter_org": settings.reporter_org or "Arachne demo hotline",
            "demo_mode": True,  # the placeholder .invalid sender is fine here, never else
            "fetch_timeout": min(settings.fetch_timeout, 10.0),
            "batch_size": min(settings.batch_size, 100),
            "workers": 2,
            "allow_private_networks": True,  # the demo site is on loopback by design
        }
    )


TAKEDOWN_CYCLE = ("404", "410", "changed")
"""How the demo's taken-down images answer, in turn: gone, gone for good, replaced."""


def take_some_down(site: DemoSite, matched: list[str]) -> dict[str, str]:
    """Every third matched URL is removed on the site, in the three ways a host removes."""
    chosen = sorted(matched)[::3]
    modes = {url: TAKEDOWN_CYCLE[i % len(TAKEDOWN_CYCLE)] for i, url in enumerate(chosen)}
    for url, mode in modes.items():
        site.take_down(url, mode)
    return modes


def verify(manifest: SiteManifest, matched: list[dict[str, Any]]) -> dict[str, Any]:
    """Compare the matched URL set with the site's ground truth."""
    got = {m["url"]: m["kind"] for m in matched}
    expected = manifest.expected_matches
    return {
        "expected": len(expected),
        "matched": len(got),
        "false_positives": sorted(set(got) - set(expected)),
        "missed": sorted(set(expected) - set(got)),
        "kind_mismatches": sorted(u for u in set(got) & set(expected) if got[u] != expected[u]),
        "ok": got == expected,
    }


def run_demo(
    settings: Settings, *, keep: bool = False, serve: bool = False, quiet: bool = False
) -> dict[str, Any]:
    started = time.monotonic()
    photos = find_photos(settings)
    demo_dir = settings.data_dir / "demo"
    if demo_dir.exists() and not keep:
        shutil.rmtree(demo_dir)
    demo_dir.mkdir(parents=True, exist_ok=True)
    say = (lambda *_a, **_k: None) if quiet else (lambda m: click.echo(m, err=True))

    say(f"demo: building the benign demo site from {photos} ...")
    site_thread = DemoSiteThread(photos)
    rdap_data = RdapData()  # filled once the site's hosts are known
    with Mailbox() as mailbox, site_thread as manifest, RdapServerThread(rdap_data) as rdap_server:
        say(
            f"demo: site up on {', '.join(manifest.hosts)}: {len(manifest.pages)} pages, "
            f"{len(manifest.image_urls)} image URLs, seed {manifest.seed_url}"
        )
        rdap_data.networks.update(demo_networks(manifest.host_names))
        bootstrap = write_bootstrap(demo_dir / "rdap-bootstrap", rdap_server.url)
        say(f"demo: local RDAP server at {rdap_server.url} (bootstrap {bootstrap})")
        s = demo_settings(settings, mailbox.port, bootstrap)
        list_file = demo_dir / "known-list.txt"  # hashes of benign photos, never images
        list_file.write_text(manifest.known_list_text)
        store = Store.open(s)
        report = import_list(store, LIST_NAME, list_file)
        say(f"demo: imported list {LIST_NAME!r}: {report.by_kind}")

        with redis_url_for(s) as redis_url:
            redis = redis_from_url(redis_url)
            forget_campaign(redis, CAMPAIGN)
            scope = Scope.for_seeds(
                [manifest.seed_url], manifest.host_names, max_depth=8, max_pages=1000
            )
            with store.session() as session:
                delete_campaign(session, CAMPAIGN)
            with store.session() as session:
                create_campaign(
                    session, CAMPAIGN, [manifest.seed_url], scope.as_json(), actor="demo"
                )

            login = demo_admin(store)
            dash_port = free_port()
            dash_env = s.child_env()
            dash_env.update(
                REDIS_URL=redis_url,
                ARACHNE_REDIS_URL=redis_url,
                ARACHNE_DASHBOARD_PORT=str(dash_port),
            )
            with signals_held():  # a Ctrl-C mid-spawn must not orphan the dashboard
                dashboard = subprocess.Popen(
                    [sys.executable, "-m", "arachne", "dashboard"],
                    env=dash_env,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            dashboard_url = f"http://127.0.0.1:{dash_port}/campaigns/{CAMPAIGN}"
            try:
                say(f"demo: dashboard at {dashboard_url}")
                user, password = login["name"], login["password"]
                say(f"demo: dashboard login {user} / {password} (throwaway admin)")
                say("demo: crawling with 2 workers ...")
                summary = run_campaign(
                    s,
                    store,
                    redis,
                    redis_url,
                    CAMPAIGN,
                    workers=2,
                    progress=None if quiet else print_progress,
                )
                say("")
                sent = send_notices(store, s, CAMPAIGN)
                with store.session() as session:
                    matched_urls = [m["url"] for m in campaign_matches(session, CAMPAIGN)]
                taken = take_some_down(site_thread.site, matched_urls)
                say(f"demo: {len(taken)} matched images taken down on the site; re-checking ...")
                rechecked = recheck_incidents(store, s, CAMPAIGN, due_only=False)
                with store.session() as session:
                    removal = removal_stats(session, s, CAMPAIGN)
                    contacts = {
                        h.hostname: {
                            "email": h.abuse_email,
                            "source": h.contact_source,
                            "provider": h.provider,
                            "country": h.country,
                        }
                        for h in session.scalars(select(Host).order_by(Host.hostname))
                    }
                with store.session() as session:
                    summary = {
                        **summary,
                        **campaign_summary(session, CAMPAIGN, Stats(redis, CAMPAIGN).get_all()),
                    }
                    matched = campaign_matches(session, CAMPAIGN)
                summary["notices_report"] = {
                    "hosts": sent.hosts,
                    "sent": sent.sent,
                    "no_contact": sent.no_contact,
                    "failed": sent.failed,
                }
                summary["contacts"] = contacts
                summary["smtp_messages_received"] = len(mailbox.messages)
                summary["removal"] = {
                    "taken_down": len(taken),
                    "rechecked": rechecked.checked,
                    "removed": removal["removed"],
                    "still_up": removal["still_up"],
                    "median_seconds": removal["median_seconds"],
                    "p90_seconds": removal["p90_seconds"],
                    "pct_within_24h": removal["pct_within_24h"],
                    "reasons": dict(
                        Counter(r["reason"] for r in rechecked.results if r["outcome"] == "removed")
                    ),
                }
                summary["ground_truth"] = verify(manifest, matched)
                summary["dashboard_url"] = dashboard_url
                summary["dashboard_login"] = login
                summary["data_dir"] = str(s.data_dir)
                summary["elapsed_seconds"] = round(time.monotonic() - started, 1)
                if not quiet:
                    print_summary(summary)
                    gt = summary["ground_truth"]
                    verdict = "matches ground truth" if gt["ok"] else "DIFFERS from ground truth"
                    click.echo(
                        f"matched URL set {verdict}: {gt['matched']} matched, {gt['expected']} "
                        f"expected, {len(gt['false_positives'])} false positives, "
                        f"{len(gt['missed'])} missed"
                    )
                    click.echo(
                        f"notices received by the local SMTP server: {len(mailbox.messages)}"
                    )
                    for host, c in contacts.items():
                        click.echo(
                            f"  {host}: {c['email'] or 'no contact'} ({c['provider']}, "
                            f"{c['country']}, from {c['source']})"
                        )
                    rm = summary["removal"]
                    median = rm["median_seconds"]
                    click.echo(
                        f"re-check after taking {rm['taken_down']} images down: "
                        f"{rm['removed']} removed, {rm['still_up']} still up; time to removal "
                        f"median {median if median is None else f'{median:.1f} s'} "
                        f"(reasons: {rm['reasons']})"
                    )
                    click.echo(
                        f"dashboard: {dashboard_url} (up while the demo runs; afterwards: "
                        f"`arachne --data-dir {settings.data_dir} demo --serve`, or "
                        f"`ARACHNE_DATA_DIR={s.data_dir} arachne dashboard` for the stored results)"
                    )
                    click.echo(
                        f"dashboard login: {login['name']} / {login['password']} "
                        "(a throwaway admin, new at every demo run)"
                    )
                    click.echo(f"finished in {summary['elapsed_seconds']} s")
                if serve:
                    click.echo("serving the demo site and dashboard; Ctrl-C to stop", err=True)
                    try:
                        while True:
                            time.sleep(3600)
                    except KeyboardInterrupt:
                        pass
            finally:
                dashboard.terminate()
                dashboard.wait(10)
            store.dispose()
    return summary


DEMO_ADMIN = "demo-admin"


def demo_admin(store: Store) -> dict[str, str]:
    """A throwaway admin for the demo's dashboard, with a new random password each run."""
    password = secrets.token_urlsafe(12)
    with store.session() as session:
        if session.scalar(select(User.id).where(User.name == DEMO_ADMIN)) is not None:
            remove_user(session, DEMO_ADMIN, actor="demo")
    with store.session() as session:
        add_user(session, DEMO_ADMIN, "admin", password, actor="demo")
    return {"name": DEMO_ADMIN, "password": password}
