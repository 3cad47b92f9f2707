"""The demo site's shape: which page lives where, what it links to, which picture sits in
which embedding, and the ground truth that follows. Pure and seeded: no sockets, no I/O
beyond reading the photos; the same seed gives the same site on any ports.
"""

from __future__ import annotations

import html
import random
from dataclasses import dataclass, field

from arachne.demo import images
from arachne.demo.images import Blob, Catalogue

BRANCHING = 8
"""Children per page in the link tree: 8 keeps 584 pages within depth 3, 4,680 within 4."""

MAX_DEPTH = 4
TRAP_START = "/calendar/2026-01-01"
SECTIONS = ("news", "gallery", "travel", "nature", "blog", "archive")
WORDS = (
    *("river", "meadow", "harbour", "lantern", "pebble", "orchard", "summit", "canyon"),
    *("breeze", "cedar", "willow", "compass", "meridian", "tide", "glacier", "marsh", "dune"),
    *("prairie", "fjord", "lagoon", "basalt", "heron", "finch", "maple", "juniper", "quarry"),
    *("tundra", "delta", "estuary"),
)
GENERATED_SIZES = ((320, 240), (400, 300), (480, 320), (256, 256), (360, 480), (640, 360))
GENERATED_EXTS = ("jpg", "jpg", "png", "webp", "png", "webp", "jpg", "gif")
PLACEHOLDER = "data:image/gif;base64,R0lGODlhAQABAAAAACH5BAEKAAEALAAAAAABAAEAAAICTAEAOw=="

# Embedding -> the role of each URL it holds (a role is how a crawler must find that URL).
EMBEDDINGS: dict[str, tuple[str, ...]] = {
    "img": ("img_src",),
    "srcset": ("img_srcset", "img_srcset"),
    "picture": ("picture_source", "img_src"),
    "inline_style": ("inline_style",),
    "style_block": ("style_block",),
    "lazy": ("lazy_src",),
    "lazy_srcset": ("lazy_srcset", "lazy_srcset"),
    "a_href": ("a_href",),
    "og": ("og_image",),
}
_EXTS = {v: k for k, v in images.CONTENT_TYPES.items()}
EXACT_COPIES = 3
"""URLs serving each known photo's exact bytes."""

BAD_INPUTS = 4
"""Image URLs that must fail: http_404, not_an_image, truncated, decompression_bomb."""

ROLES = tuple(dict.fromkeys(role for roles in EMBEDDINGS.values() for role in roles))


@dataclass
class Resource:
    """One servable image; generated ones are rendered on first request, then kept."""

    content_type: str
    data: bytes | None = None
    spec: tuple[str, int, int, int, str] | None = None  # (kind, seed, width, height, ext)

    def body(self) -> bytes:
        if self.data is None:
            assert self.spec is not None
            self.data = images.render_blob(*self.spec).data
        return self.data


@dataclass
class HostContent:
    pages: dict[str, str] = field(default_factory=dict)  # path -> HTML
    resources: dict[str, Resource] = field(default_factory=dict)  # path -> image
    trap: bool = False  # serves the endless /calendar/ pages
    # path -> how a taken-down image answers now (see site.TAKEDOWN_MODES): lets tests and
    # the demo show re-checks finding content removed, replaced or erroring.
    takedowns: dict[str, str] = field(default_factory=dict)


@dataclass
class Item:
    label: str
    path: str
    resource: Resource | None  # None: referenced but never served (a 404)
    host: int | None = None  # None: the page's host, sometimes another
    expected: str | None = None  # "exact" | "near"
    bad: str | None = None
    query: str = ""


@dataclass
class Layout:
    hosts: list[HostContent]
    pages: list[str]
    image_urls: set[str]
    expected_matches: dict[str, str]
    bad_urls: dict[str, str]
    embeddings: dict[str, str]  # image URL -> role where it first appears
    known_list_text: str
    known_list_csv: str
    trap_url: str


def _upload_path(rng: random.Random, ext: str) -> str:
    """Opaque, CMS-like names: nothing in a URL hints at what the picture is."""
    year, month, name = rng.randint(2019, 2026), rng.randint(1, 12), rng.getrandbits(48)
    return f"/uploads/{year}/{month:02d}/{name:012x}.{ext}"


def _photo_item(
    rng: random.Random, label: str, blob: Blob, host: int | None = None, expected: str | None = None
) -> Item:
    ext = _EXTS[blob.content_type]
    resource = Resource(blob.content_type, blob.data)
    return Item(label, _upload_path(rng, ext), resource, host=host, expected=expected)


def _generated_item(rng: random.Random) -> Item:
    kind = rng.choice(images.GENERATED_KINDS)
    seed = rng.getrandbits(31)
    width, height = rng.choice(GENERATED_SIZES)
    ext = rng.choice(GENERATED_EXTS)
    resource = Resource(images.CONTENT_TYPES[ext], spec=(kind, seed, width, height, ext))
    query = f"?v={rng.randint(2, 9)}" if rng.random() < 0.05 else ""  # cache-busting, as CMSs do
    return Item(
        f"{kind}/{seed}", f"/media/{kind}/{seed}-{width}x{height}.{ext}", resource, query=query
    )


def _special_items(
    cat: Catalogue, n_hosts: int, rng: random.Random
) -> tuple[list[Item], list[Item]]:
    """(must-place items: known copies and bad inputs; nice-to-place: unrelated photos)."""
    required: list[Item] = []
    for j, known in enumerate(cat.known):
        for copy in range(EXACT_COPIES):  # the same bytes at several URLs, on every host
            host = (j + copy) % n_hosts
            required.append(
                _photo_item(rng, f"{known.name}/exact", known.exact, host=host, expected="exact")
            )
        for name, blob in known.variants.items():
            required.append(_photo_item(rng, f"{known.name}/{name}", blob, expected="near"))
    bad_blobs: list[tuple[str, Blob | None, str]] = [
        ("truncated", images.truncated_jpeg(rng.getrandbits(31)), "jpg"),
        ("not_an_image", Blob(images.NOT_AN_IMAGE, "image/jpeg"), "jpg"),
        ("http_404", None, "jpg"),
        ("decompression_bomb", images.bomb_png(), "png"),
    ]
    for k, (reason, blob, ext) in enumerate(bad_blobs):
        resource = None if blob is None else Resource(blob.content_type, blob.data)
        path = _upload_path(rng, ext)
        required.append(Item(f"bad/{reason}", path, resource, host=k % n_hosts, bad=reason))
    optional = [_photo_item(rng, label, blob) for label, blob in cat.unrelated]
    return required, optional


def page_path(i: int) -> str:
    if i == 0:
        return "/"
    section = SECTIONS[i % len(SECTIONS)]
    slug = f"{WORDS[i % len(WORDS)]}-{WORDS[(i * 7) % len(WORDS)]}"
    return f"/{section}/{i}/" if i % 5 == 0 else f"/{section}/{slug}-{i}.html"


def _plan(n_pages: int, per_page: int) -> list[list[tuple[str, list[int]]]]:
    """Per page, the embeddings it uses and the slot numbers they hold (global, in order)."""
    kinds = [k for k in EMBEDDINGS if k != "og"]
    plan: list[list[tuple[str, list[int]]]] = []
    slot = 0
    for i in range(n_pages):
        page: list[tuple[str, list[int]]] = []
        used = 0
        if i % 3 == 0:  # og:image on a third of the pages: it is one per page at most
            page.append(("og", [slot]))
            slot, used = slot + 1, 1
        k = i
        while used < per_page:
            kind = kinds[k % len(kinds)]
            k += 1
            width = len(EMBEDDINGS[kind])
            if used + width > per_page:
                kind, width = "img", 1
            page.append((kind, list(range(slot, slot + width))))
            slot, used = slot + width, used + width
        plan.append(page)
    return plan


def check_capacity(n_pages: int, per_page: int, known_count: int) -> None:
    """Raise ``ValueError`` before any work if the site cannot hold what it must show."""
    if n_pages > sum(BRANCHING**d for d in range(MAX_DEPTH + 1)):
        raise ValueError(f"{n_pages} pages do not fit within link depth {MAX_DEPTH}")
    slots = sum(len(slots) for page in _plan(n_pages, per_page) for _, slots in page)
    required = known_count * (EXACT_COPIES + len(images.VARIANT_NAMES)) + BAD_INPUTS
    if required > slots:
        raise ValueError(f"{slots} image slots cannot hold {required} required images")


def build_layout(
    catalogue: Catalogue, bases: list[str], *, n_pages: int, per_page: int, seed: int
) -> Layout:
    n_hosts = len(bases)
    check_capacity(n_pages, per_page, len(catalogue.known))
    rng = random.Random(seed)
    plan = _plan(n_pages, per_page)
    slot_roles: list[str] = []
    for page in plan:
        for kind, slots in page:
            slot_roles.extend(EMBEDDINGS[kind][: len(slots)])
    required, optional = _special_items(catalogue, n_hosts, rng)

    # Known copies go round-robin over the roles, so every way of embedding carries matches;
    # bad inputs sit in plain <img src>, the rest is shuffled in.
    free: dict[str, list[int]] = {role: [] for role in ROLES}
    for n, role in enumerate(slot_roles):
        free[role].append(n)
    for slots in free.values():
        rng.shuffle(slots)
    assigned: dict[int, Item] = {}
    role_cycle = [r for r in ROLES if free[r]]
    for n, item in enumerate(required):
        role = "img_src" if item.bad else role_cycle[n % len(role_cycle)]
        pool = free[role] or next(s for s in free.values() if s)
        assigned[pool.pop()] = item
    rest = [s for slots in free.values() for s in slots]
    rng.shuffle(rest)
    fillers = optional[: len(rest)]
    generated = [_generated_item(rng) for _ in range(len(rest) - len(fillers))]
    assigned.update(zip(rest, fillers + generated, strict=True))
    hosts = [HostContent(trap=(h == n_hosts - 1)) for h in range(n_hosts)]
    page_urls = [bases[i % n_hosts] + page_path(i) for i in range(n_pages)]
    logos = [f"/static/logo-{h}.png" for h in range(n_hosts)]
    for h, path in enumerate(logos):  # one logo per host, on every page: the same URL many times
        hosts[h].resources[path] = Resource("image/png", spec=("shapes", seed + h, 200, 60, "png"))
    # Spot-check generated pictures against the known list (rendering them also warms the
    # cache); photos were all checked in build_catalogue.
    sample = [h.resources[path] for h, path in zip(hosts, logos, strict=True)]
    sample += [g.resource for g in rng.sample(generated, min(24, len(generated))) if g.resource]
    images.verify_unrelated(
        [(str(r.spec), Blob(r.body(), r.content_type)) for r in sample], catalogue.known
    )
    trap_url = bases[-1] + TRAP_START
    out = Layout(hosts, page_urls, set(), {}, {}, {}, "", "", trap_url)
    for h in range(n_hosts):
        out.image_urls.add(bases[h] + logos[h])
        out.embeddings[bases[h] + logos[h]] = "img_src"

    for i, page in enumerate(plan):
        host = i % n_hosts
        placed: list[tuple[str, list[str]]] = []
        for kind, slots in page:
            urls: list[str] = []
            for n, role in zip(slots, EMBEDDINGS[kind], strict=False):
                item = assigned[n]
                if item.host is None:  # most images are local; some come from a sibling host
                    item.host = host if rng.random() < 0.8 else rng.randrange(n_hosts)
                if item.resource is not None:
                    hosts[item.host].resources[item.path] = item.resource
                url = bases[item.host] + item.path + item.query
                out.image_urls.add(url)
                out.embeddings.setdefault(url, role)
                if item.expected:
                    out.expected_matches[url] = item.expected
                if item.bad:
                    out.bad_urls[url] = item.bad
                # Same-host URLs are written root-relative (mostly), as real pages do.
                local = item.host == host and kind != "og" and rng.random() < 0.8
                urls.append(item.path + item.query if local else url)
            placed.append((kind, urls))
        links = _links(i, n_pages, rng)
        hrefs = [(page_path(j) if j % n_hosts == host else page_urls[j], j) for j in links]
        if i in (0, 1):
            hrefs.append((trap_url if host != n_hosts - 1 else TRAP_START, -1))
        logo = logos[host]
        hosts[host].pages[page_path(i)] = render_page(i, placed, hrefs, logo)

    known = catalogue.known
    out.known_list_text = "".join(f"pdq {k.pdq}\nmd5 {k.md5}\n" for k in known)
    out.known_list_csv = "md5,sha1,sha256,pdq,category,id\n" + "".join(
        f"{k.md5},{k.sha1},{k.sha256},{k.pdq},demo,demo-{j + 1:04d}\n" for j, k in enumerate(known)
    )
    return out


def _links(i: int, n_pages: int, rng: random.Random) -> list[int]:
    """Parent, children, neighbours and two random pages: a tree with shortcuts."""
    links = [] if i == 0 else [(i - 1) // BRANCHING]
    links += [c for c in range(BRANCHING * i + 1, BRANCHING * i + BRANCHING + 1) if c < n_pages]
    links += [j for j in (i - 1, i + 1) if 0 <= j < n_pages]
    links += [rng.randrange(n_pages) for _ in range(2)]
    return list(dict.fromkeys(j for j in links if j != i))


def _attr(value: str) -> str:
    return html.escape(value, quote=True)


def render_page(
    i: int, placed: list[tuple[str, list[str]]], hrefs: list[tuple[str, int]], logo: str
) -> str:
    title = f"{WORDS[i % len(WORDS)].title()} {WORDS[(i * 7 + 3) % len(WORDS)]} — page {i}"
    head: list[str] = []
    rules: list[str] = []
    body: list[str] = []
    for n, (kind, urls) in enumerate(placed):
        alt = f"{WORDS[(i + n) % len(WORDS)]} picture"
        if kind == "og":
            head.append(f'<meta property="og:image" content="{_attr(urls[0])}">')
        elif kind == "img":
            body.append(f'<img src="{_attr(urls[0])}" alt="{alt}" loading="lazy">')
        elif kind == "srcset":
            srcset = f"{urls[0]} 480w, {urls[1]} 960w"
            body.append(
                f'<img src="{_attr(urls[0])}" srcset="{_attr(srcset)}" '
                f'sizes="(max-width: 600px) 480px, 960px" alt="{alt}">'
            )
        elif kind == "picture":
            ext = urls[0].split("?")[0].rsplit(".", 1)[-1]
            body.append(
                f'<picture><source type="{images.CONTENT_TYPES[ext]}" srcset="{_attr(urls[0])}">'
                f'<img src="{_attr(urls[1])}" alt="{alt}"></picture>'
            )
        elif kind == "inline_style":
            css = (f"url('{urls[0]}')", f"url({urls[0]})", f'url("{urls[0]}")')[(i + n) % 3]
            body.append(f'<div class="hero" style="{_attr(f"background-image:{css}")}"></div>')
        elif kind == "style_block":
            rules.append(f'.tile-{n} {{ background: #eee url("{urls[0]}") no-repeat center; }}')
            body.append(f'<div class="tile-{n}">{alt}</div>')
        elif kind == "lazy":
            body.append(
                f'<img class="lazy" src="{PLACEHOLDER}" data-src="{_attr(urls[0])}" alt="{alt}">'
            )
        elif kind == "lazy_srcset":
            srcset = f"{urls[0]} 1x, {urls[1]} 2x"
            body.append(
                f'<img class="lazy" src="{PLACEHOLDER}" data-srcset="{_attr(srcset)}" alt="{alt}">'
            )
        elif kind == "a_href":
            body.append(f'<a href="{_attr(urls[0])}">Download the full-size {alt}</a>')
    nav = "\n".join(
        f'<li><a href="{_attr(href)}">{"Events calendar" if j < 0 else f"Page {j}"}</a></li>'
        for href, j in hrefs
    )
    style = f"<style>\n{chr(10).join(rules)}\n</style>" if rules else ""
    figures = "\n".join(f"<figure>{b}</figure>" for b in body)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
{chr(10).join(head)}
{style}
</head><body>
<header><img src="{logo}" alt="site logo" class="logo"><h1>{html.escape(title)}</h1></header>
<nav><ul>
{nav}
</ul></nav>
<main><p>Photographs and drawings from around the {WORDS[(i * 3) % len(WORDS)]}.</p>
{figures}
</main>
<footer><a href="#top">Back to top</a></footer>
</body></html>
"""
