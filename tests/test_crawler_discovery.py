"""Recall on the discovery site: the real CampaignSpider, crawling a real local server, finds
exactly the ground-truth image URLs, every embedding kind, and nothing else."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.discovery_site import DiscoveryManifest, DiscoverySiteThread

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def site() -> Iterator[DiscoveryManifest]:
    with DiscoverySiteThread() as manifest:
        yield manifest


@pytest.fixture(scope="module")
def crawled(site: DiscoveryManifest, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    from tests.conftest import REDIS_TEST_URL

    env = {k: v for k, v in os.environ.items() if not k.startswith("ARACHNE_")}
    env["ARACHNE_CONFIG"] = str(tmp_path_factory.mktemp("cfg") / "none.toml")
    env["ARACHNE_DATA_DIR"] = str(tmp_path_factory.mktemp("data"))
    proc = subprocess.run(
        [sys.executable, "-m", "tests.discovery_site", site.base + "/", REDIS_TEST_URL],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_every_truth_url_serves_an_image(site: DiscoveryManifest) -> None:
    for url in site.truth:
        with urllib.request.urlopen(url, timeout=10) as resp:
            assert resp.headers["Content-Type"].startswith("image/"), url


def test_found_set_is_exactly_the_ground_truth(
    site: DiscoveryManifest, crawled: dict[str, Any]
) -> None:
    found = {i["url"] for i in crawled["images"]}
    missed = {u: k for u, k in site.truth.items() if u not in found}
    assert missed == {}, "recall below 100%"
    assert found - set(site.truth) == set(), "false positives"
    assert len(site.truth) >= 60


def test_image_by_content_type_is_attributed_to_the_linking_page(
    site: DiscoveryManifest, crawled: dict[str, Any]
) -> None:
    pages = {i["page"] for i in crawled["images"] if i["url"] == site.base + "/download?id=7"}
    assert pages == {site.base + "/basic.html"}
    assert crawled["stats"]["arachne/image_by_content_type"] == 1
    # Its download was stopped at the headers: Scrapy never read the image.
    assert crawled["stats"]["arachne/image_by_content_type/stopped"] == 1
    # The CSS images belong to the page that linked the stylesheet.
    css_pages = {i["page"] for i in crawled["images"] if "/css/deep/" in i["url"]}
    assert css_pages <= {site.base + "/css.html", site.base + "/css2.html"}


def test_data_uris_are_hashed_where_found_and_only_hashes_travel(
    site: DiscoveryManifest, crawled: dict[str, Any]
) -> None:
    import hashlib

    from tests.discovery_site import data_uris

    assert not any(i["url"].startswith("data:") for i in crawled["images"]), "never fetched"
    assert crawled["stats"]["arachne/data_uri/images"] == site.data_uri_images
    from arachne.crawler.extract.datauri import decode_data_uri

    expected = {hashlib.sha256(decode_data_uri(u, 10**7)[1]).hexdigest() for u in data_uris()}
    inline = {i["hashes"]["sha256"]: i for i in crawled["inline"]}
    assert set(inline) == expected
    for sha, item in inline.items():
        assert item["url"] == f"data:image/png;sha256,{sha}", "named by hash, no content"
        assert item["hashes"]["pdq"] and item["page"].startswith(site.base)


def test_stylesheets_and_sitemaps_are_fetched_once_each(
    site: DiscoveryManifest, crawled: dict[str, Any]
) -> None:
    stats = crawled["stats"]
    assert stats["arachne/stylesheet/requested"] == site.stylesheets_in_scope
    # robots.txt, /sitemap.xml, the index, pages.xml, more.xml.gz (off-scope one skipped).
    assert stats["arachne/sitemap/requested"] == 5
