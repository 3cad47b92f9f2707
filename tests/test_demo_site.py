"""The demo site against its own promises, checked independently over real loopback HTTP:
an own HTML parser, an own PDQ comparison (pdqhash directly), no use of the site's helpers."""

from __future__ import annotations

import asyncio
import hashlib
import io
import re
import struct
import urllib.error
import urllib.request
import zlib
from collections import Counter, defaultdict
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import numpy as np
import pdqhash
import pytest
from PIL import Image, UnidentifiedImageError

from arachne.demo import images
from arachne.demo.images import Blob, KnownPhoto
from arachne.demo.site import DemoSite, DemoSiteThread, SiteManifest

PHOTOS = Path("/work/shared/data/photos")
IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".webp", ".gif")
FORMATS = {"image/jpeg": "JPEG", "image/png": "PNG", "image/webp": "WEBP", "image/gif": "GIF"}
KINDS = (
    "img_src",
    "img_srcset",
    "picture_source",
    "inline_style",
    "style_block",
    "lazy_src",
    "lazy_srcset",
    "a_href",
    "og_image",
)
CSS_URL = re.compile(r"""url\(\s*['"]?([^'")]+?)['"]?\s*\)""")

Response = tuple[int, str, bytes]  # status, content type, body


def fetch(url: str) -> Response:
    try:
        with urllib.request.urlopen(url, timeout=30) as resp:
            return resp.status, resp.headers.get("Content-Type", ""), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("Content-Type", ""), exc.read()


def fetch_all(urls: list[str]) -> dict[str, Response]:
    with ThreadPoolExecutor(16) as pool:
        return dict(zip(urls, pool.map(fetch, urls), strict=True))


class PageParser(HTMLParser):
    """Collects page links and image URLs by how they are embedded."""

    def __init__(self, base: str) -> None:
        super().__init__()
        self.base = base
        self.links: list[str] = []
        self.found: dict[str, set[str]] = defaultdict(set)
        self._picture = False
        self._in_style = False

    def _add(self, kind: str, url: str) -> None:
        if not url.startswith("data:"):
            self.found[kind].add(urljoin(self.base, url.strip()))

    def _srcset(self, kind: str, value: str) -> None:
        for candidate in value.split(","):
            self._add(kind, candidate.split()[0])

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "a" and a.get("href") and not a["href"].startswith("#"):
            href = a["href"]
            if urlsplit(href).path.lower().endswith(IMAGE_EXTS):
                self._add("a_href", href)
            else:
                self.links.append(urljoin(self.base, href))
        elif tag == "img":
            if "src" in a:
                self._add("img_src", a["src"])
            if "srcset" in a:
                self._srcset("img_srcset", a["srcset"])
            if "data-src" in a:
                self._add("lazy_src", a["data-src"])
            if "data-srcset" in a:
                self._srcset("lazy_srcset", a["data-srcset"])
        elif tag == "source" and self._picture and "srcset" in a:
            self._srcset("picture_source", a["srcset"])
        elif tag == "picture":
            self._picture = True
        elif tag == "meta" and a.get("property") == "og:image":
            self._add("og_image", a["content"])
        elif tag == "style":
            self._in_style = True
        if "style" in a:
            for url in CSS_URL.findall(a["style"]):
                self._add("inline_style", url)

    def handle_endtag(self, tag: str) -> None:
        self._picture = self._picture and tag != "picture"
        self._in_style = self._in_style and tag != "style"

    def handle_data(self, data: str) -> None:
        if self._in_style:
            for url in CSS_URL.findall(data):
                self._add("style_block", url)


def pdq_dihedral(data: bytes) -> tuple[list[str], int]:
    arr = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    hashes, quality = pdqhash.compute_dihedral(arr)
    return [np.packbits(h.astype(np.uint8)).tobytes().hex() for h in hashes], quality


def distance(a: str, b: str) -> int:
    return (int(a, 16) ^ int(b, 16)).bit_count()


def known_entries(text: str) -> tuple[set[str], set[str]]:
    kinds: dict[str, set[str]] = defaultdict(set)
    for line in text.splitlines():
        kind, value = line.split(" ")
        kinds[kind].add(value)
    return kinds["pdq"], kinds["md5"]


@pytest.fixture(scope="module")
def site() -> Iterator[SiteManifest]:
    with DemoSiteThread(PHOTOS) as manifest:
        yield manifest


@pytest.fixture(scope="module")
def crawl(site: SiteManifest) -> tuple[dict[str, int], dict[str, set[str]]]:
    """BFS over <a href> from the seed to depth 4: (page URL -> depth, kind -> image URLs)."""
    depth = {site.seed_url: 0}
    found: dict[str, set[str]] = defaultdict(set)
    frontier = [site.seed_url]
    while frontier:
        next_frontier: list[str] = []
        for url, (status, ctype, body) in fetch_all(frontier).items():
            assert status == 200 and ctype.startswith("text/html"), url
            parser = PageParser(url)
            parser.feed(body.decode())
            if url in site.pages:  # trap pages are followed but hold no images
                for kind, urls in parser.found.items():
                    found[kind] |= urls
            else:
                assert not parser.found, f"{url} is not a content page but embeds images"
            for link in parser.links:
                if link not in depth and depth[url] < 4:
                    depth[link] = depth[url] + 1
                    next_frontier.append(link)
        frontier = next_frontier
    return depth, found


@pytest.fixture(scope="module")
def served(site: SiteManifest) -> dict[str, Response]:
    return fetch_all(sorted(site.image_urls))


def test_three_distinct_hosts_with_robots(site: SiteManifest) -> None:
    assert site.host_names == ["127.0.0.2", "127.0.0.3", "127.0.0.4"]
    assert [urlsplit(h).hostname for h in site.hosts] == site.host_names
    assert urlsplit(site.seed_url).hostname == "127.0.0.2"
    for base in site.hosts:
        status, ctype, body = fetch(base + "/robots.txt")
        assert (status, ctype.split(";")[0]) == (200, "text/plain")
        assert "User-agent: *" in body.decode() and "Disallow: /" not in body.decode()


def test_200_pages_reachable_within_depth_4_across_hosts(site, crawl) -> None:
    depth, _ = crawl
    assert len(site.pages) >= 200 and len(set(site.pages)) == len(site.pages)
    unreached = set(site.pages) - set(depth)
    assert not unreached, f"{len(unreached)} content pages not reachable within depth 4"
    assert Counter(urlsplit(p).hostname for p in site.pages).keys() == set(site.host_names)
    for page in site.pages:
        assert fetch(page)[0] == 200


def test_trap_is_endless_and_outside_the_content(site: SiteManifest, crawl) -> None:
    depth, _ = crawl
    assert site.trap_url in depth and site.trap_url not in site.pages
    url, seen = site.trap_url, set()
    for _ in range(30):  # each day links to a new next day
        status, _, body = fetch(url)
        assert status == 200 and b"<img" not in body
        seen.add(url)
        url = urljoin(url, re.search(rb'href="([^"]+)">Next day', body)[1].decode())
    assert len(seen) == 30 and url not in seen
    assert fetch(site.hosts[0] + "/calendar/2026-01-01")[0] == 404  # only on one host


def test_image_urls_and_every_embedding_kind(site: SiteManifest, crawl) -> None:
    _, found = crawl
    everything = set().union(*found.values())
    assert everything == site.image_urls
    assert len(site.image_urls) >= 1000
    for kind in KINDS:
        others = set().union(*(urls for k, urls in found.items() if k != kind))
        only_here = found[kind] - others
        assert only_here, f"no image URL is reachable only through {kind}"
        # and known pictures hide in every kind of embedding, so a crawler must handle them all
        assert only_here & site.expected_matches.keys(), f"no expected match only in {kind}"
    hosts = Counter(urlsplit(u).hostname for u in site.image_urls)
    assert hosts.keys() == set(site.host_names)


def test_formats_and_content_types(site: SiteManifest, served: dict[str, Response]) -> None:
    formats: Counter[str] = Counter()
    for url, (status, ctype, body) in served.items():
        if url in site.bad_urls:
            continue
        assert status == 200, url
        assert ctype in FORMATS, (url, ctype)
        img = Image.open(io.BytesIO(body))
        assert img.format == FORMATS[ctype], (url, ctype, img.format)
        assert max(img.size) <= 1024
        formats[img.format] += 1
    assert set(formats) == set(FORMATS.values()), formats
    # the same URL serves the same bytes again (generated pictures are cached, not re-drawn)
    again = fetch_all(sorted(site.image_urls)[:50])
    assert all(again[u][2] == served[u][2] for u in again)


def test_bad_urls_behave_as_designed(site: SiteManifest, served, monkeypatch) -> None:
    assert sorted(site.bad_urls.values()) == sorted(
        ["http_404", "not_an_image", "truncated", "decompression_bomb"]
    )
    assert site.bad_urls.keys() <= site.image_urls
    assert not site.bad_urls.keys() & site.expected_matches.keys()
    # other modules may lift Pillow's process-wide cap; the default is what this checks against
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", int(1024 * 1024 * 1024 // 4 // 3))
    for url, reason in site.bad_urls.items():
        status, ctype, body = served[url]
        if reason == "http_404":
            assert status == 404
            continue
        assert status == 200
        if reason == "not_an_image":
            assert ctype == "image/jpeg" and body.lstrip().lower().startswith(b"<!doctype html")
            with pytest.raises(UnidentifiedImageError):
                Image.open(io.BytesIO(body))
        elif reason == "truncated":
            assert ctype == "image/jpeg" and body.startswith(b"\xff\xd8")
            img = Image.open(io.BytesIO(body))  # the header is intact...
            assert img.format == "JPEG"
            with pytest.raises(OSError, match="truncated"):
                img.load()  # ...the pixels are not
        elif reason == "decompression_bomb":
            assert ctype == "image/png" and len(body) < 2048
            assert body[12:16] == b"IHDR"
            assert struct.unpack(">II", body[16:24]) == (50_000, 50_000)
            crc = struct.unpack(">I", body[29:33])[0]
            assert crc == zlib.crc32(body[12:29])
            with pytest.raises(Image.DecompressionBombError, match="2500000000 pixels"):
                Image.open(io.BytesIO(body))
        else:
            pytest.fail(f"unknown reason {reason}")


def test_ground_truth_holds_for_every_image(site: SiteManifest, served) -> None:
    """Exact: md5 on the list. Near: within 31 of a listed PDQ (any of 8 dihedral variants)
    and not on the md5 list. Everything else: no match at all."""
    pdqs, md5s = known_entries(site.known_list_text)
    assert len(pdqs) == len(md5s) == 6
    kinds = Counter(site.expected_matches.values())
    assert kinds["exact"] >= 6 and kinds["near"] >= 24
    exact_by_md5: dict[str, set[str]] = defaultdict(set)
    for url, (_, _, body) in served.items():
        if url in site.bad_urls:
            continue
        md5 = hashlib.md5(body).hexdigest()
        hashes, quality = pdq_dihedral(body)
        best = min(distance(h, k) for h in hashes for k in pdqs)
        expected = site.expected_matches.get(url)
        if expected == "exact":
            assert md5 in md5s, url
            exact_by_md5[md5].add(url)
        elif expected == "near":
            assert md5 not in md5s, url
            assert best <= 31 and quality >= 50, (url, best, quality)
        else:
            assert md5 not in md5s, url
            assert best > 31 or quality < 50, (url, best, quality)
    # every listed picture is served exactly, at several URLs spread over all hosts
    assert exact_by_md5.keys() == md5s
    assert all(len(urls) >= 2 for urls in exact_by_md5.values())
    hosts = {urlsplit(u).hostname for urls in exact_by_md5.values() for u in urls}
    assert hosts == set(site.host_names)


def test_known_lists_follow_the_reference_path(site: SiteManifest, served) -> None:
    pdqs, md5s = known_entries(site.known_list_text)
    by_md5 = {}
    for url, kind in site.expected_matches.items():
        if kind == "exact":
            by_md5[hashlib.md5(served[url][2]).hexdigest()] = served[url][2]
    for body in by_md5.values():
        bits, quality = pdqhash.compute(np.asarray(Image.open(io.BytesIO(body)).convert("RGB")))
        assert np.packbits(bits.astype(np.uint8)).tobytes().hex() in pdqs and quality >= 50
    lines = site.known_list_csv.splitlines()
    assert lines[0] == "md5,sha1,sha256,pdq,category,id"
    rows = [line.split(",") for line in lines[1:]]
    assert {r[0] for r in rows} == md5s and {r[3] for r in rows} == pdqs
    for md5, sha1, sha256, *_ in rows:
        body = by_md5[md5]
        assert (hashlib.sha1(body).hexdigest(), hashlib.sha256(body).hexdigest()) == (sha1, sha256)


def test_generator_refuses_a_false_ground_truth(site: SiteManifest, served) -> None:
    """verify_unrelated must fail loudly when a near copy is passed off as unrelated."""
    exact = next(u for u, k in site.expected_matches.items() if k == "exact")
    pdq, quality = images.pdq_of(served[exact][2])
    md5 = hashlib.md5(served[exact][2]).hexdigest()
    known = KnownPhoto("k", Blob(served[exact][2], served[exact][1]), pdq, quality, md5, "", "")
    near = next(  # a near copy of that same photo
        u
        for u, k in site.expected_matches.items()
        if k == "near" and min(distance(h, pdq) for h in pdq_dihedral(served[u][2])[0]) <= 31
    )
    with pytest.raises(RuntimeError, match="from a known PDQ"):
        images.verify_unrelated([("near", Blob(served[near][2], served[near][1]))], [known])
    with pytest.raises(RuntimeError, match="known md5"):
        images.verify_unrelated([("copy", known.exact)], [known])


def test_small_site_and_too_small_site() -> None:
    async def run(**kwargs: int) -> SiteManifest:
        demo = DemoSite(PHOTOS, **kwargs)
        try:
            return await demo.start()
        finally:
            await demo.stop()

    small = asyncio.run(run(pages=30, images_per_page=4, seed=7, known_count=2))
    assert len(small.pages) == 30
    assert Counter(small.expected_matches.values()) == {"exact": 6, "near": 8}
    with pytest.raises(ValueError, match="image slots"):  # refused before binding anything
        DemoSite(PHOTOS, pages=4, images_per_page=2, known_count=6)
    with pytest.raises(ValueError, match="link depth"):
        DemoSite(PHOTOS, pages=5000)


def test_take_down_switch_answers_as_a_host_that_removed_the_content() -> None:
    thread = DemoSiteThread(PHOTOS, pages=30, images_per_page=4, seed=7, known_count=2)
    with thread as manifest:
        urls = sorted(manifest.expected_matches)[:6]
        before = fetch_all(urls)
        assert {status for status, _, _ in before.values()} == {200}
        modes = ["404", "410", "451", "changed", "html", "500"]
        for url, mode in zip(urls, modes, strict=True):
            thread.site.take_down(url, mode)
        after = fetch_all(urls)
        assert [after[u][0] for u in urls] == [404, 410, 451, 200, 200, 500]
        changed = after[urls[3]]
        assert changed[1] == "image/png" and changed[2] != before[urls[3]][2]
        assert Image.open(io.BytesIO(changed[2])).getextrema() == ((200, 200),) * 3  # flat
        assert after[urls[4]][1].startswith("text/html")  # a soft 404 with status 200
        thread.site.take_down(urls[0], "up")  # served again: the content reappeared
        assert fetch(urls[0]) == before[urls[0]]
        with pytest.raises(ValueError, match="not on this demo site"):
            thread.site.take_down("http://192.0.2.1/x.jpg")
        with pytest.raises(ValueError, match="unknown take-down mode"):
            thread.site.take_down(urls[0], "teapot")
