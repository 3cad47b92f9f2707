"""strip_tracking: tracking tags and session ids dropped from page URLs, and dedup keys."""

from __future__ import annotations

import pytest

from arachne.crawler.scope import normalize_url, strip_tracking


def test_utm_params_removed_and_others_kept_in_order() -> None:
    url = "https://site.test/p?z=9&utm_source=news&a=1&utm_medium=email&m=%20x&utm_campaign=c"
    assert strip_tracking(url) == "https://site.test/p?z=9&a=1&m=%20x"


@pytest.mark.parametrize("name", ["fbclid", "gclid"])
def test_click_ids_removed(name: str) -> None:
    url = f"https://site.test/p?id=7&{name}=IwAR0abc-DEF_123"
    assert strip_tracking(url) == "https://site.test/p?id=7"


def test_only_tracking_params_leaves_no_question_mark() -> None:
    assert strip_tracking("https://site.test/p?fbclid=x&gclid=y") == "https://site.test/p"


def test_short_sid_is_kept() -> None:
    assert strip_tracking("https://site.test/forum?sid=3") == "https://site.test/forum?sid=3"


def test_token_like_sid_is_removed() -> None:
    url = "https://site.test/forum?t=5&sid=0123456789abcdef0123"
    assert strip_tracking(url) == "https://site.test/forum?t=5"


def test_other_session_names_removed_whatever_the_value() -> None:
    url = "https://site.test/shop?cat=2&zenid=1&cfid=2&cftoken=3&session_id=x"
    assert strip_tracking(url) == "https://site.test/shop?cat=2"


def test_search_param_s_is_kept() -> None:
    url = "https://site.test/?s=0123456789abcdef0123"
    assert strip_tracking(url) == url


def test_jsessionid_path_param_removed() -> None:
    url = "https://site.test/a/b.html;jsessionid=ABC123?x=1"
    assert strip_tracking(url) == "https://site.test/a/b.html?x=1"
    assert strip_tracking("https://site.test/a;JSESSIONID=ab12/b") == "https://site.test/a/b"


def test_aspnet_cookieless_segment_removed() -> None:
    url = "https://site.test/(S(lit3py55t21z5v55vlm25s55))/Orders/List.aspx?id=4"
    assert strip_tracking(url) == "https://site.test/Orders/List.aspx?id=4"


@pytest.mark.parametrize(
    "url",
    [
        "https://site.test/a/b?z=1&a=%7e&b=c+d&&e",
        "HTTP://Site.TEST/a%20b/c;v=1?q=%E2%82%AC#frag",
        "https://site.test/search?q=utm_source&sid=abc",
        "https://site.test/",
        "https://site.test/p?",
        "/relative/path?x=1",
    ],
)
def test_url_without_tracking_returned_unchanged(url: str) -> None:
    assert strip_tracking(url) == url


def test_fragment_kept() -> None:
    url = "https://site.test/p?a=1&utm_source=x#section-2"
    assert strip_tracking(url) == "https://site.test/p?a=1#section-2"
    assert strip_tracking("https://site.test/p?utm_term=x#top") == "https://site.test/p#top"


def test_utm_without_underscore_kept() -> None:
    url = "https://site.test/p?utmost=1&utm=2"
    assert strip_tracking(url) == url


def test_names_are_case_insensitive() -> None:
    url = "https://site.test/p?UTM_Source=x&k=v&PHPSESSID=abc&FbClid=y"
    assert strip_tracking(url) == "https://site.test/p?k=v"


def test_normalize_url_ignores_tracking_and_session_params() -> None:
    plain = "https://site.test/gallery/view.php?page=2&id=9"
    tagged = (
        "https://site.test/gallery/view.php;jsessionid=F00D?utm_source=x&page=2"
        "&PHPSESSID=deadbeef&id=9&fbclid=abc#photo"
    )
    assert normalize_url(tagged) == normalize_url(plain)
    assert normalize_url(plain) == "https://site.test/gallery/view.php?id=9&page=2"


def test_normalize_url_keeps_different_query_values_apart() -> None:
    assert normalize_url("https://site.test/list?page=2&utm_source=a") != normalize_url(
        "https://site.test/list?page=3&utm_source=a"
    )
