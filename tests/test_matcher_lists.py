"""List importers: text and CSV parsing, format detection, the 64-hex rule, error lines.

Every hash here is a digest of a short benign byte string or derived from one; no list
holds anything but that.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from arachne.errors import ListFormatError
from arachne.matcher.lists import (
    FORMATS,
    HASH_KINDS,
    CsvListImporter,
    ListEntry,
    NcmecListImporter,
    TextListImporter,
    VicsListImporter,
    detect_format,
    normalise_hash,
    parse_list,
)
from arachne.matcher.lists import _registry as registry
from arachne.matcher.lists.text import kind_hint

MD5 = hashlib.md5(b"benign-1").hexdigest()
MD5_B = hashlib.md5(b"benign-2").hexdigest()
SHA1 = hashlib.sha1(b"benign-1").hexdigest()
SHA256 = hashlib.sha256(b"benign-1").hexdigest()
# Random-looking 256-bit values standing in for PDQ hashes of benign photos.
PDQ = hashlib.sha256(b"pdq-stand-in-1").hexdigest()
PDQ_B = hashlib.sha256(b"pdq-stand-in-2").hexdigest()


def write(path: Path, text: str, *, newline: str = "\n", bom: bool = False) -> Path:
    data = text.replace("\n", newline).encode()
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + data)
    return path


def keys(entries: list[ListEntry]) -> list[tuple[str, str]]:
    return [(e.kind, e.value) for e in entries]


# ---------------------------------------------------------------- normalise_hash


def test_normalise_hash_lowercases_and_strips() -> None:
    assert normalise_hash("md5", f"  {MD5.upper()}\t") == MD5
    assert normalise_hash("pdq", PDQ.upper()) == PDQ


@pytest.mark.parametrize(
    ("kind", "value", "message"),
    [
        ("md5", MD5[:-1], "32 hex digits, got 31"),
        ("sha1", SHA1 + "0", "40 hex digits, got 41"),
        ("md5", "0x" + MD5[:30], "'x'"),  # int(v, 16) would accept the 0x prefix
        ("md5", MD5[:15] + "_" + MD5[16:], "'_'"),
        ("pdq", PDQ[:63] + "g", "'g'"),
        ("sha256", SHA256[:32] + " " + SHA256[33:], "' '"),
        ("crc32", "deadbeef", "unknown hash kind"),
    ],
)
def test_normalise_hash_refuses(kind: str, value: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        normalise_hash(kind, value)


def test_hash_kind_lengths() -> None:
    assert HASH_KINDS == {"md5": 32, "sha1": 40, "sha256": 64, "pdq": 64}


# ---------------------------------------------------------------- text lists


def test_text_prefixed_lines_comments_blank_crlf_uppercase(tmp_path: Path) -> None:
    path = write(
        tmp_path / "list.txt",
        f"# exported for a test\n\npdq {PDQ.upper()}\n   \nMD5\t{MD5}  # inline comment\n"
        f"sha1 {SHA1} benign-cat\nsha256 {SHA256}\n",
        newline="\r\n",
    )
    parsed = parse_list(path)
    assert parsed.format == "text"
    assert parsed.entries == [
        ListEntry("pdq", PDQ),
        ListEntry("md5", MD5),
        ListEntry("sha1", SHA1, category="benign-cat"),
        ListEntry("sha256", SHA256),
    ]
    assert parsed.retractions == []
    assert parsed.snapshot is True


def test_text_bare_hex_infers_md5_and_sha1_and_mixes_with_prefixed(tmp_path: Path) -> None:
    path = write(tmp_path / "plain.txt", f"{MD5}\n{SHA1.upper()}\npdq {PDQ}\n")
    assert keys(parse_list(path).entries) == [("md5", MD5), ("sha1", SHA1), ("pdq", PDQ)]


def test_text_bom_is_dropped(tmp_path: Path) -> None:
    path = write(tmp_path / "list.txt", f"md5 {MD5}\n", bom=True)
    assert keys(parse_list(path).entries) == [("md5", MD5)]


def test_text_duplicates_collapse_first_wins(tmp_path: Path) -> None:
    path = write(tmp_path / "list.txt", f"md5 {MD5} first\n{MD5.upper()} second\nmd5 {MD5_B}\n")
    entries = parse_list(path).entries
    assert entries == [ListEntry("md5", MD5, "first"), ListEntry("md5", MD5_B)]


def test_text_same_value_different_kinds_are_distinct(tmp_path: Path) -> None:
    path = write(tmp_path / "list.txt", f"pdq {PDQ}\nsha256 {PDQ}\n")
    assert keys(parse_list(path).entries) == [("pdq", PDQ), ("sha256", PDQ)]


# ------------------------------------------------ the 64-hex ambiguity rule


def test_bare_64_hex_without_hint_is_refused_with_line_and_kind_advice(tmp_path: Path) -> None:
    path = write(tmp_path / "hashes.txt", f"# header\n{MD5}\n{PDQ}\n")
    with pytest.raises(ListFormatError, match="--kind") as info:
        parse_list(path)
    assert info.value.line == 3
    assert info.value.path == str(path)
    assert "SHA-256 or PDQ" in info.value.message


@pytest.mark.parametrize("kind", ["pdq", "sha256"])
def test_bare_64_hex_uses_kind_argument(tmp_path: Path, kind: str) -> None:
    path = write(tmp_path / "hashes.txt", f"{PDQ}\n{PDQ_B}\n")
    assert keys(parse_list(path, kind=kind).entries) == [(kind, PDQ), (kind, PDQ_B)]


@pytest.mark.parametrize(
    ("name", "kind"),
    [("known-PDQ.txt", "pdq"), ("list_sha256.txt", "sha256"), ("x.sha-256.txt", "sha256")],
)
def test_bare_64_hex_uses_file_name_hint(tmp_path: Path, name: str, kind: str) -> None:
    path = write(tmp_path / name, f"{PDQ}\n{MD5}\n")
    assert keys(parse_list(path).entries) == [(kind, PDQ), ("md5", MD5)]


def test_file_name_naming_both_kinds_is_no_hint(tmp_path: Path) -> None:
    assert kind_hint(tmp_path / "pdq-and-sha256.txt") is None
    # Only the file name counts, not the folder it sits in.
    assert kind_hint(tmp_path / "pdq" / "list.txt") is None
    path = write(tmp_path / "pdq-and-sha256.txt", f"{PDQ}\n")
    with pytest.raises(ListFormatError, match="--kind"):
        parse_list(path)


def test_kind_argument_wins_over_file_name(tmp_path: Path) -> None:
    path = write(tmp_path / "pdq.txt", f"{PDQ}\n")
    assert keys(parse_list(path, kind="sha256").entries) == [("sha256", PDQ)]


def test_kind_argument_applies_to_every_bare_line(tmp_path: Path) -> None:
    # A 32-digit line in a list declared PDQ is an error, not a silent MD5.
    path = write(tmp_path / "hashes.txt", f"{PDQ}\n{MD5}\n")
    with pytest.raises(ListFormatError, match="pdq hash must be 64 hex digits") as info:
        parse_list(path, kind="pdq")
    assert info.value.line == 2


def test_kind_argument_does_not_override_prefixed_lines(tmp_path: Path) -> None:
    path = write(tmp_path / "hashes.txt", f"md5 {MD5}\n{PDQ}\n")
    assert keys(parse_list(path, kind="pdq").entries) == [("md5", MD5), ("pdq", PDQ)]


def test_unknown_kind_argument_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path / "hashes.txt", f"{PDQ}\n")
    with pytest.raises(ListFormatError, match="unknown hash kind 'crc'"):
        parse_list(path, kind="crc")


# ---------------------------------------------------------------- malformed text


@pytest.mark.parametrize(
    ("body", "line", "message"),
    [
        (f"md5 {MD5}\n\nmd5 {MD5[:-2]}\n", 3, "32 hex digits, got 30"),
        (f"md5 {MD5}\npdq {PDQ[:-1]}z\n", 2, "'z'"),
        (f"md5 {MD5}\nmd5\n", 2, "no hash after the kind"),
        (f"# c\nmd5 {MD5} cat extra\n", 2, "3 fields|4 fields"),
        (f"{MD5}\n{'a' * 48}\n", 2, "48 characters"),
        (f"{MD5}\nnot-a-hash\n", 2, "10 characters"),
        (f"pdq {PDQ}\nmd5 {MD5} {'c' * 65}\n", 2, "category is 65 characters"),
    ],
)
def test_malformed_text_reports_first_bad_line(
    tmp_path: Path, body: str, line: int, message: str
) -> None:
    path = write(tmp_path / "bad.txt", body, newline="\r\n")
    with pytest.raises(ListFormatError, match=message) as info:
        parse_list(path)
    assert info.value.line == line
    assert f"{path}:{line}:" in str(info.value)


def test_non_utf8_line_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "bad.txt"
    path.write_bytes(f"md5 {MD5}\n".encode() + b"md5 \xff\xfe\n")
    with pytest.raises(ListFormatError, match="not UTF-8") as info:
        parse_list(path)
    assert info.value.line == 2


def test_error_messages_do_not_repeat_hash_values(tmp_path: Path) -> None:
    path = write(tmp_path / "bad.txt", f"md5 {MD5}0\n")
    with pytest.raises(ListFormatError) as info:
        parse_list(path)
    assert MD5 not in str(info.value)


# ---------------------------------------------------------------- CSV


def test_csv_columns_any_order_case_extra_bom_crlf(tmp_path: Path) -> None:
    path = write(
        tmp_path / "list.csv",
        "Notes,ID,PDQ,md5,Category,Threshold\n"
        f'"free, text",a-1,{PDQ.upper()},{MD5},cat-a,20\n'
        f",a-2,,{MD5_B},,\n",
        newline="\r\n",
        bom=True,
    )
    parsed = parse_list(path)
    assert parsed.format == "csv"
    assert parsed.entries == [
        ListEntry("md5", MD5, "cat-a", "a-1", None),  # a distance means nothing for MD5
        ListEntry("pdq", PDQ, "cat-a", "a-1", 20),
        ListEntry("md5", MD5_B, None, "a-2", None),
    ]


def test_csv_all_hash_columns_and_blank_and_short_rows(tmp_path: Path) -> None:
    path = write(
        tmp_path / "list.csv",
        "md5,sha1,sha256,pdq,category,id\n"
        f"{MD5},{SHA1},{SHA256},{PDQ},c,1\n"
        "\n,,,,,\n"
        f"{MD5_B}\n",  # a short row: missing trailing cells read as empty
    )
    parsed = parse_list(path)
    assert keys(parsed.entries) == [
        ("md5", MD5),
        ("sha1", SHA1),
        ("sha256", SHA256),
        ("pdq", PDQ),
        ("md5", MD5_B),
    ]
    assert parsed.by_kind() == {"md5": 2, "sha1": 1, "sha256": 1, "pdq": 1}


def test_csv_header_only_is_an_empty_list(tmp_path: Path) -> None:
    path = write(tmp_path / "list.csv", "md5,category\n")
    assert parse_list(path).entries == []


@pytest.mark.parametrize(
    ("body", "line", "message"),
    [
        (f"md5,id\n{MD5},1\n\n{MD5[:-1]}x,3\n", 4, "'x'"),
        (f"id,pdq\n1,{PDQ}\n2,{PDQ[:40]}\n", 3, "64 hex digits, got 40"),
        ("\nname,category\nx,y\n", 2, "no hash column"),
        (f"md5,MD5\n{MD5},{MD5}\n", 1, "'md5' appears twice"),
        (f"md5,id\n{MD5},1\n,2\n", 3, "no hash in any hash column"),
        (f"pdq,threshold\n{PDQ},20\n{PDQ_B},far\n", 3, "threshold 'far'"),
        (f"pdq,threshold\n{PDQ},129\n", 2, "from 0 to 128"),
        (f"md5,id\n{MD5},{'i' * 201}\n", 2, "id is 201 characters"),
        (f'md5,id\n{MD5},"unterminated\n', 2, "CSV syntax"),
    ],
)
def test_malformed_csv_reports_line(tmp_path: Path, body: str, line: int, message: str) -> None:
    path = write(tmp_path / "bad.csv", body)
    with pytest.raises(ListFormatError, match=message) as info:
        parse_list(path)
    assert info.value.line == line


def test_empty_csv_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path / "empty.csv", "\n\n")
    with pytest.raises(ListFormatError, match="no header row"):
        parse_list(path)


def test_kind_argument_is_refused_for_csv(tmp_path: Path) -> None:
    path = write(tmp_path / "list.csv", f"pdq\n{PDQ}\n")
    with pytest.raises(ListFormatError, match="--kind is not used"):
        parse_list(path, kind="pdq")


# ---------------------------------------------------------------- detection, registry


@pytest.mark.parametrize(
    ("name", "body", "expected"),
    [
        ("list.csv", f"md5\n{MD5}\n", "csv"),
        ("export.dat", f"ID,Md5,notes\n1,{MD5},x\n", "csv"),  # header, no .csv suffix
        ("export.dat", f"\ufeffmd5\n{MD5}\n", "csv"),
        ("hashes.lst", f"# comment\n\npdq {PDQ}\n", "text"),
        ("hashes.lst", f"{MD5.upper()}\n", "text"),
        ("hashes.txt", "# nothing yet\n", "text"),
        ("hashes.txt", "garbage\n", "text"),  # .txt: the text importer reports the line
    ],
)
def test_detect_format(tmp_path: Path, name: str, body: str, expected: str) -> None:
    assert detect_format(write(tmp_path / name, body)) == expected


def test_detect_unknown_format_names_the_option(tmp_path: Path) -> None:
    path = write(tmp_path / "list.json", '{"hashes": []}\n')
    with pytest.raises(ListFormatError, match="--format") as info:
        parse_list(path)
    assert info.value.line is None


def test_explicit_format_overrides_detection(tmp_path: Path) -> None:
    # A .csv file holding text lines: detection says csv, --format text reads it.
    path = write(tmp_path / "odd.csv", f"md5 {MD5}\n")
    with pytest.raises(ListFormatError, match="no hash column"):
        parse_list(path)
    assert keys(parse_list(path, format="text").entries) == [("md5", MD5)]


def test_unknown_format_name_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path / "list.txt", f"md5 {MD5}\n")
    with pytest.raises(ListFormatError, match="unknown list format 'stix'.*ncmec, vics, csv, text"):
        parse_list(path, format="stix")


def test_missing_file_is_a_list_format_error(tmp_path: Path) -> None:
    with pytest.raises(ListFormatError, match="cannot read"):
        parse_list(tmp_path / "nope.txt")
    with pytest.raises(ListFormatError, match="cannot read"):
        parse_list(tmp_path / "nope.txt", format="text")


def test_registry_is_keyed_by_importer_name() -> None:
    # Order is detection order: content-recognised NCMEC XML and VICS JSON first, then
    # CSV's header test before text's "looks like hex".
    assert list(FORMATS.items()) == [
        ("ncmec", NcmecListImporter),
        ("vics", VicsListImporter),
        ("csv", CsvListImporter),
        ("text", TextListImporter),
    ]
    assert all(name == importer.name for name, importer in FORMATS.items())


def test_registry_refuses_duplicate_names() -> None:
    class OtherText(TextListImporter):
        pass

    with pytest.raises(RuntimeError, match="'text' is claimed by both"):
        registry(TextListImporter, OtherText)
