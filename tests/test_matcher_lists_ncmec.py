"""NCMEC hash-sharing XML: mapping, deletions as a delta, ordering, XML bombs, error lines.

Hashes are digests of benign shared photos (the sample file) or of short benign strings.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from arachne.errors import ListFormatError
from arachne.matcher.lists import ListEntry, NcmecListImporter, detect_format, parse_list

DATA = Path(__file__).parent / "data" / "lists"
NS = "https://hashsharing.ncmec.org/hashsharing/v2"


def md5(seed: str) -> str:
    return hashlib.md5(seed.encode()).hexdigest()


def sha1(seed: str) -> str:
    return hashlib.sha1(seed.encode()).hexdigest()


def pdq(seed: str) -> str:
    return hashlib.sha256(b"pdq:" + seed.encode()).hexdigest()


def image(
    id_: str,
    *,
    member: str | None = "42",
    ts: str | None = None,
    cls: str | None = "A1",
    fps: str | None = None,
    deleted: bool = False,
) -> str:
    tag = "deletedImage" if deleted else "image"
    parts = [f"<{tag}>"]
    if member is not None:
        parts.append(f'  <member id="{member}">Sample Member</member>')
    if ts is not None:
        parts.append(f"  <timestamp>{ts}</timestamp>")
    parts.append(f"  <id>{id_}</id>")
    if cls is not None and not deleted:
        parts.append(f"  <classification>{cls}</classification>")
    if fps is None and not deleted:
        fps = f"<md5>{md5(id_)}</md5>"
    if fps is not None:
        parts.append(f"  <fingerprints>{fps}</fingerprints>")
    parts.append(f"</{tag}>")
    return "\n".join(parts)


def document(*records: str, videos: str = "") -> str:
    return (
        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
        f'<queryResult xmlns="{NS}">\n<images>\n'
        + "\n".join(records)
        + f"\n</images>\n{videos}</queryResult>\n"
    )


def _line_of(text: str, needle: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if needle in line)


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


# ---------------------------------------------------------------- the sample file


def test_sample_file_mapping() -> None:
    parsed = parse_list(DATA / "ncmec-entries.xml")
    assert parsed.format == "ncmec"
    assert parsed.snapshot is False  # a delta: what it does not name stays as it is
    assert parsed.entries == [
        ListEntry("md5", "f24210802e8d0690e0c1c2302f907cc4", "A1", "42-image1"),
        ListEntry("sha1", "12b3dd17187374ea93c22228e8e5c62939999148", "A1", "42-image1"),
        ListEntry(
            "pdq",
            "8c629e779a663698b9a33866c026726c21a679f61eb6e1f8c79ba7e23c8299e0",
            "A1",
            "42-image1",
        ),
        # Upper-case hex is normalised; the feedback's nested <member id="77"> is not the
        # record's member.
        ListEntry("md5", "314296a0a5dd3c394e57f4efac733c20", "A2", "43-image2"),
        ListEntry("sha1", "11638b5afc7225d0a1088521a7edd467a6f4dc35", "A2", "43-image2"),
    ]
    assert parsed.retracted_ids == ["42-image0"]
    assert parsed.retractions == []
    # Two PhotoDNA hashes; the video's md5, sha1 and by-reference tmk-pdqf.
    assert parsed.skipped == {"photodna": 2, "video": 3}


def test_detection() -> None:
    assert detect_format(DATA / "ncmec-entries.xml") == "ncmec"


@pytest.mark.parametrize(
    ("name", "text", "expected"),
    [
        ("entries.dat", document(image("a")), True),  # by namespace, whatever the name
        ("entries.xml", "<queryResult><images count='0'/></queryResult>", True),
        ("x.xml", "\n  <ns:deletedImage xmlns:ns='urn:x'><ns:id>1</ns:id></ns:deletedImage>", True),
        ("feed.xml", "<rss><channel><image><url>x</url></image></channel></rss>", False),
        ("list.txt", f"md5 {md5('a')}\n", False),
        ("v.json", '{"value": []}', False),
    ],
)
def test_sniff(tmp_path: Path, name: str, text: str, expected: bool) -> None:
    path = write(tmp_path / name, text)
    assert NcmecListImporter.sniff(path.read_text(), path) is expected


# ---------------------------------------------------------------- mapping details


def test_all_fingerprint_kinds_and_unknown_ones(tmp_path: Path) -> None:
    sha256 = hashlib.sha256(b"benign").hexdigest()
    fps = (
        f"<md5>{md5('x')}</md5><sha1>{sha1('x')}</sha1><sha256>{sha256}</sha256>"
        f"<pdq>\n   {pdq('x').upper()}\n</pdq><PhotoDNA>AAAA</PhotoDNA><netclean>01</netclean>"
        '<videntifier rel="self" href="/v2/entries/1/fingerprints/VIDENTIFIER"/>'
    )
    parsed = parse_list(write(tmp_path / "e.xml", document(image("x", fps=fps))))
    assert [(e.kind, e.value) for e in parsed.entries] == [
        ("md5", md5("x")),
        ("sha1", sha1("x")),
        ("sha256", sha256),
        ("pdq", pdq("x")),
    ]
    assert parsed.skipped == {"netclean": 1, "photodna": 1, "videntifier": 1}


def test_id_attribute_no_member_prefixed_namespace(tmp_path: Path) -> None:
    text = (
        '<n:queryResult xmlns:n="urn:sample"><n:images>'
        f'<n:image id="attr-1"><n:fingerprints><n:md5>{md5("a")}</n:md5></n:fingerprints>'
        "</n:image><n:deletedImage id='attr-0'/></n:images></n:queryResult>"
    )
    parsed = parse_list(write(tmp_path / "e.xml", text))
    assert parsed.entries == [ListEntry("md5", md5("a"), None, "attr-1")]
    assert parsed.retracted_ids == ["attr-0"]


def test_empty_delta_is_valid(tmp_path: Path) -> None:
    text = f'<queryResult xmlns="{NS}"><images count="0"/></queryResult>'
    parsed = parse_list(write(tmp_path / "e.xml", text))
    assert (parsed.entries, parsed.retracted_ids, parsed.snapshot) == ([], [], False)


def test_deleted_image_with_fingerprints_retracts_those_hashes(tmp_path: Path) -> None:
    record = image("gone", deleted=True, fps=f"<md5>{md5('gone')}</md5>")
    parsed = parse_list(write(tmp_path / "e.xml", document(record)))
    assert parsed.retracted_ids == ["42-gone"]
    assert parsed.retractions == [ListEntry("md5", md5("gone"), None, "42-gone")]


def test_same_id_from_two_members_are_two_items(tmp_path: Path) -> None:
    text = document(
        image("1", member="42", fps=f"<md5>{md5('a')}</md5>"),
        image("1", member="43", fps=f"<md5>{md5('b')}</md5>"),
        image("1", member="43", deleted=True),
    )
    parsed = parse_list(write(tmp_path / "e.xml", text))
    assert parsed.entries == [ListEntry("md5", md5("a"), "A1", "42-1")]
    assert parsed.retracted_ids == ["43-1"]


# ---------------------------------------------------------------- order within one file


@pytest.mark.parametrize(
    ("listed_at", "deleted_at", "kept"),
    [
        ("2026-10-24T15:00:00Z", "2026-10-24T16:00:00Z", False),  # deleted after listing
        ("2026-10-24T17:00:00Z", "2026-10-24T16:00:00Z", True),  # listed again afterwards
        ("2026-10-24T16:00:00", "2026-10-24T16:00:00Z", False),  # a tie: deletion wins
        (None, "2026-10-24T16:00:00Z", False),  # unknown time: deletion wins
        ("not a time", "2026-10-24T16:00:00Z", False),
    ],
)
def test_listed_and_deleted_in_one_file_later_timestamp_wins(
    tmp_path: Path, listed_at: str | None, deleted_at: str, kept: bool
) -> None:
    for order in ((False, True), (True, False)):  # file order must not matter
        records = [image("a", ts=deleted_at if d else listed_at, deleted=d) for d in order]
        parsed = parse_list(write(tmp_path / "e.xml", document(*records)))
        assert [e.external_id for e in parsed.entries] == (["42-a"] if kept else [])
        assert parsed.retracted_ids == ([] if kept else ["42-a"])


def test_repeated_image_record_latest_timestamp_wins(tmp_path: Path) -> None:
    newer = image("a", ts="2026-10-24T17:00:00Z", cls="A2", fps=f"<md5>{md5('new')}</md5>")
    older = image("a", ts="2026-10-24T15:00:00Z", cls="A1", fps=f"<md5>{md5('old')}</md5>")
    for records in ((newer, older), (older, newer)):
        parsed = parse_list(write(tmp_path / "e.xml", document(*records)))
        assert parsed.entries == [ListEntry("md5", md5("new"), "A2", "42-a")]


# ---------------------------------------------------------------- XML bombs and DTDs

BILLION_LAUGHS = """<?xml version="1.0"?>
<!DOCTYPE queryResult [
  <!ENTITY lol "lol">
  <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
  <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
  <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
]>
<queryResult><images><image><id>&lol4;</id></image></images></queryResult>
"""

EXTERNAL_ENTITY = """<?xml version="1.0"?>
<!DOCTYPE queryResult [<!ENTITY leak SYSTEM "file:///etc/hostname">]>
<queryResult><images><image><id>&leak;</id></image></images></queryResult>
"""

PARAMETER_ENTITY = """<?xml version="1.0"?>
<!DOCTYPE queryResult SYSTEM "http://127.0.0.1:9/evil.dtd">
<queryResult/>
"""


@pytest.mark.parametrize(
    "text",
    [BILLION_LAUGHS, EXTERNAL_ENTITY, PARAMETER_ENTITY, "<!DOCTYPE queryResult>\n<queryResult/>"],
    ids=["billion-laughs", "external-entity", "external-dtd", "plain-doctype"],
)
def test_doctype_and_entities_are_refused(tmp_path: Path, text: str) -> None:
    path = write(tmp_path / "bomb.xml", text)
    assert detect_format(path) == "ncmec"  # detected, then refused with a reason
    with pytest.raises(ListFormatError, match="DOCTYPE or entity declarations") as info:
        parse_list(path)
    assert info.value.path == str(path)
    assert (
        info.value.line
        == text.splitlines().index(
            next(line for line in text.splitlines() if line.startswith("<!DOCTYPE"))
        )
        + 1
    )


def test_undeclared_entity_is_a_syntax_error(tmp_path: Path) -> None:
    text = document(image("a"), "<deletedImage><id>&x;</id></deletedImage>")
    path = write(tmp_path / "e.xml", text)
    with pytest.raises(ListFormatError, match="XML syntax: undefined entity") as info:
        parse_list(path)
    assert info.value.line == _line_of(text, "&x;")


# ---------------------------------------------------------------- malformed files


@pytest.mark.parametrize(
    ("records", "needle", "message"),
    [
        (
            [image("a"), image("b", fps=f"<md5>{md5('b')[:-1]}</md5>")],
            md5("b")[:-1],
            "image 'b': md5 hash must be 32 hex digits, got 31",
        ),
        ([image("a"), image("c", fps=f"<pdq>{pdq('c')[:-1]}z</pdq>")], "<pdq>", "'z'"),
        (
            [image("a"), "<image>\n<fingerprints/>\n</image>"],
            "<image>\n<fingerprints/>",
            "image record has no <id>",
        ),
        (
            ["<deletedImage><member id='1'/></deletedImage>"],
            "<deletedImage>",
            "deletedImage record has no <id>",
        ),
        ([image("a", cls="c" * 65)], "<image>", "classification is 65 characters"),
        ([image("i" * 200)], "<image>", "id is 203 characters"),  # "42-" + 200
        ([image("a", fps=f"<md5>{'0' * 5000}</md5>")], "<md5>", "<md5> text is too long"),
    ],
)
def test_bad_records_name_their_line(
    tmp_path: Path, records: list[str], needle: str, message: str
) -> None:
    text = document(*records)
    path = write(tmp_path / "bad.xml", text)
    with pytest.raises(ListFormatError, match=message) as info:
        parse_list(path)
    first_line = needle.split("\n")[0]
    candidates = [i for i, line in enumerate(text.splitlines(), 1) if first_line in line]
    # The record's (or fingerprint's) own line: the last record is the bad one here.
    assert info.value.line == candidates[-1]
    assert f"{path}:{info.value.line}:" in str(info.value)


_GOOD = document(image("a"))
_CUT = _GOOD.index("</image>")


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        # Truncated downloads: at a line end (expat reports the line after) and mid-tag.
        (_GOOD[: _GOOD.index("\n", _CUT) + 1], _GOOD[:_CUT].count("\n") + 2, "no element found"),
        (_GOOD[: _CUT + 4], _GOOD[:_CUT].count("\n") + 1, "unclosed token"),
        (
            _GOOD.replace("</fingerprints>", "</fingerprint>"),
            _line_of(_GOOD, "</fingerprints>"),
            "mismatched tag",
        ),
        ("", 1, "no element found"),
        ("<queryResult>\n<images>\n<image>x & y</image>", 3, "not well-formed"),
    ],
)
def test_syntax_errors_name_their_line(tmp_path: Path, text: str, line: int, message: str) -> None:
    path = write(tmp_path / "bad.xml", text)
    with pytest.raises(ListFormatError, match=f"XML syntax: {message}") as info:
        parse_list(path, format="ncmec")
    assert info.value.line == line


def test_xml_without_ncmec_records_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path / "other.xml", "<catalog><book id='1'/></catalog>")
    with pytest.raises(ListFormatError, match="no NCMEC records"):
        parse_list(path, format="ncmec")


def test_error_messages_do_not_repeat_hash_values(tmp_path: Path) -> None:
    bad = md5("secret") + "0"
    path = write(tmp_path / "bad.xml", document(image("a", fps=f"<md5>{bad}</md5>")))
    with pytest.raises(ListFormatError) as info:
        parse_list(path)
    assert md5("secret") not in str(info.value)


def test_kind_option_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ListFormatError, match="--kind is not used"):
        parse_list(DATA / "ncmec-entries.xml", kind="md5")


# ---------------------------------------------------------------- size: read in chunks


def test_large_file_across_read_chunks_keeps_lines_exact(tmp_path: Path) -> None:
    # ~2.5 MB: several 1 MiB chunks, so records and lines straddle chunk boundaries.
    records = [image(f"n{i}", ts="2026-10-24T15:00:00Z") for i in range(9000)]
    text = document(*records, image("late", deleted=True))
    path = write(tmp_path / "big.xml", text)
    parsed = parse_list(path)
    assert len(parsed.entries) == 9000
    assert parsed.entries[-1] == ListEntry("md5", md5("n8999"), "A1", "42-n8999")
    assert parsed.retracted_ids == ["42-late"]

    bad = text.replace(f"<md5>{md5('n8500')}</md5>", f"<md5>{md5('n8500')[:-1]}</md5>")
    with pytest.raises(ListFormatError, match="image 'n8500'") as info:
        parse_list(write(path, bad))
    assert info.value.line == _line_of(bad, md5("n8500")[:-1])
