"""Project VIC (VICS) JSON: field mapping, both model versions, skipped hashes, error lines.

Hashes are digests of benign shared photos (the sample files) or of short benign strings.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from arachne.errors import ListFormatError
from arachne.matcher.lists import ListEntry, VicsListImporter, detect_format, parse_list

DATA = Path(__file__).parent / "data" / "lists"
CONTEXT = "http://github.com/VICSDATAMODEL/ProjectVic/DataModels/2.0.xml/Default/$metadata#Media"


def md5(seed: str) -> str:
    return hashlib.md5(seed.encode()).hexdigest()


def sha1(seed: str) -> str:
    return hashlib.sha1(seed.encode()).hexdigest()


def sha256(seed: str) -> str:
    return hashlib.sha256(seed.encode()).hexdigest()


def media(media_id: Any, **fields: Any) -> dict[str, Any]:
    return {"MediaID": media_id, "Category": 1, "MD5": md5(str(media_id)), **fields}


def write(path: Path, media_list: list[Any], **top: Any) -> Path:
    document = {"@odata.context": CONTEXT, **top, "value": media_list}
    path.write_text(json.dumps(document, indent=2))
    return path


def line_of(path: Path, needle: str, nth: int = 0) -> int:
    lines = [i for i, line in enumerate(path.read_text().splitlines(), 1) if needle in line]
    return lines[nth]


# ---------------------------------------------------------------- the sample files


def test_vics_2_sample_mapping() -> None:
    parsed = parse_list(DATA / "vics-export.json")
    assert parsed.format == "vics"
    assert parsed.snapshot is True  # an export is the whole set
    assert (parsed.retractions, parsed.retracted_ids) == ([], [])
    coffee = [e for e in parsed.entries if e.external_id == "1"]
    assert coffee == [
        ListEntry("md5", "f24210802e8d0690e0c1c2302f907cc4", "1", "1"),
        ListEntry("sha1", "12b3dd17187374ea93c22228e8e5c62939999148", "1", "1"),
        ListEntry(
            "sha256", "cc02f8ca188b167c775a7101b5d767d1e71792cf762c33d6fa15a4599b5a8de7", "1", "1"
        ),
        ListEntry(
            "pdq", "8c629e779a663698b9a33866c026726c21a679f61eb6e1f8c79ba7e23c8299e0", "1", "1"
        ),
    ]
    # Numeric categories are kept as text, 0 included; a null SHA1 is simply absent.
    assert [(e.kind, e.category) for e in parsed.entries if e.external_id == "3"] == [("md5", "0")]
    flower = [(e.kind, e.category) for e in parsed.entries if e.external_id == "4"]
    assert flower == [("md5", "3"), ("sha1", "3"), ("sha256", "3")]  # "SHA-256" is sha256
    assert parsed.by_kind() == {"md5": 4, "sha1": 3, "sha256": 2, "pdq": 2}
    # Two top-level PhotoDNA fields, one in AlternativeHashes; an Imagemark hash.
    assert parsed.skipped == {"imagemark": 1, "photodna": 3}


def test_vics_1_cases_sample_mixed_case_keys() -> None:
    parsed = parse_list(DATA / "vics-v1-cases.json")
    assert parsed.format == "vics"
    assert parsed.entries == [
        ListEntry("md5", "c56a7b8ac1a9a25b3a5d9965c1e1ee15", "1", "a-100"),
        ListEntry("sha1", "25370b960fe64d21bb7bc13f3d91d4ca53b8058c", "1", "a-100"),
        ListEntry("md5", "83d5e6ca6fb2724cdb5cf64cf891f7a8", "2", "a-101"),
        ListEntry("sha1", "3deae592a61771bde59494944d41901dcb282bbe", "2", "a-101"),
        ListEntry(
            "pdq", "8ee552196df86aa552b514e6e505e0319aeb1aaea4a5d935dd4a675a1a56a555", "2", "a-101"
        ),
    ]
    assert parsed.skipped == {"photodna": 1}


@pytest.mark.parametrize("name", ["vics-export.json", "vics-v1-cases.json"])
def test_detection(name: str) -> None:
    assert detect_format(DATA / name) == "vics"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"odata.metadata": "x#Cases", "value": []}', True),
        ('\n  {"@odata.context": "x#Media", "value": []}', True),
        ('{"value": [{"MediaID": 1, "MD5": "00"}]}', True),  # no context, but Media-shaped
        ('{"value": []}', False),
        ('{"hashes": [{"md5": "00"}]}', False),
        ('[{"MD5": "00"}]', False),
        ("md5,sha1\n", False),
    ],
)
def test_sniff(tmp_path: Path, text: str, expected: bool) -> None:
    path = tmp_path / "export.json"
    path.write_text(text)
    assert VicsListImporter.sniff(text, path) is expected


# ---------------------------------------------------------------- mapping details


def test_alternative_hash_names_and_kinds(tmp_path: Path) -> None:
    alts = [
        {"HashName": "sha_256", "HashValue": sha256("a").upper()},
        {"hashname": "Pdq", "hashvalue": sha256("pdq-a")},
        {"HashName": "MD5", "HashValue": md5("alt")},  # an extra MD5 is kept
        {"HashName": "PhotoDNA", "HashValue": ""},  # empty: neither stored nor counted
        {"HashName": "F1", "HashValue": "ab"},
        {"HashName": None, "HashValue": "cd"},
    ]
    path = write(tmp_path / "v.json", [media(7, SHA1="", AlternativeHashes=alts)])
    parsed = parse_list(path)
    assert [(e.kind, e.value) for e in parsed.entries] == [
        ("md5", md5("7")),
        ("sha256", sha256("a")),
        ("pdq", sha256("pdq-a")),
        ("md5", md5("alt")),
    ]
    assert parsed.skipped == {"f1": 1, "unnamed": 1}


def test_optional_fields_absent(tmp_path: Path) -> None:
    path = write(tmp_path / "v.json", [{"MD5": md5("x")}, {"Category": 2}, {}])
    assert parse_list(path).entries == [ListEntry("md5", md5("x"))]


def test_duplicates_collapse_first_wins(tmp_path: Path) -> None:
    path = write(tmp_path / "v.json", [media(1), media(2, MD5=md5("1"), Category=2)])
    assert parse_list(path).entries == [ListEntry("md5", md5("1"), "1", "1")]


def test_next_link_page_is_a_delta(tmp_path: Path) -> None:
    path = write(tmp_path / "v.json", [media(1)], **{"@odata.nextLink": "https://x/Media?$skip=1"})
    assert parse_list(path).snapshot is False


def test_empty_export_is_an_empty_snapshot(tmp_path: Path) -> None:
    parsed = parse_list(write(tmp_path / "v.json", []))
    assert (parsed.entries, parsed.snapshot) == ([], True)


def test_bom_is_accepted(tmp_path: Path) -> None:
    path = write(tmp_path / "v.json", [media(1)])
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    assert detect_format(path) == "vics"
    assert len(parse_list(path).entries) == 1


# ---------------------------------------------------------------- malformed files


def test_json_syntax_error_names_line_and_column(tmp_path: Path) -> None:
    path = write(tmp_path / "v.json", [media(1), media(2)])
    text = path.read_text()
    path.write_text(text.replace('"Category": 1,\n      "MD5"', '"Category": 1,,\n      "MD5"', 2))
    with pytest.raises(ListFormatError, match="JSON syntax: Expecting property name") as info:
        parse_list(path)
    assert info.value.line == line_of(path, ",,")
    assert info.value.path == str(path)


def test_truncated_file(tmp_path: Path) -> None:
    path = write(tmp_path / "v.json", [media(1), media(2)])
    text = path.read_text()
    path.write_text(text[: text.index('"MediaID": 2')])
    with pytest.raises(ListFormatError, match="JSON syntax") as info:
        parse_list(path)
    assert info.value.line == len(path.read_text().splitlines())


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ({"MD5": md5("x")[:-1]}, r"value\[2\] \(MediaID 3\): MD5: md5 hash must be 32 hex"),
        ({"SHA1": sha1("x")[:-1] + "g"}, "SHA1: sha1 hash contains 'g'"),
        (
            {"AlternativeHashes": [{"HashName": "PDQ", "HashValue": "ff"}]},
            "AlternativeHashes pdq: pdq hash must be 64 hex digits, got 2",
        ),
        ({"MD5": 12345}, "MD5 must be text, not int"),
        ({"Category": {"id": 1}}, "Category must be a number or text, not dict"),
        ({"Category": True}, "Category must be a number or text, not bool"),
        ({"Category": "c" * 65}, "Category is 65 characters"),
        ({"AlternativeHashes": {"PDQ": "x"}}, "AlternativeHashes must be an array"),
        ({"AlternativeHashes": ["x"]}, "AlternativeHashes must hold"),
        ({"md5": md5("y")}, "field 'md5' appears twice"),
    ],
)
def test_bad_media_names_the_line_it_starts_on(
    tmp_path: Path, bad: dict[str, Any], message: str
) -> None:
    path = write(tmp_path / "v.json", [media(1), media(2), media(3, **bad), media(4)])
    with pytest.raises(ListFormatError, match=message) as info:
        parse_list(path)
    # json.dumps(indent=2) puts each Media's "{" on the line before its "MediaID".
    assert info.value.line == line_of(path, '"MediaID": 3') - 1
    assert f"{path}:{info.value.line}:" in str(info.value)


def test_bad_media_in_a_case_names_its_line(tmp_path: Path) -> None:
    case = {"CaseID": "c", "Media": [media(1), media(2, MD5="nothex")]}
    path = tmp_path / "v.json"
    path.write_text(json.dumps({"odata.metadata": "x#Cases", "value": [case]}, indent=1))
    with pytest.raises(ListFormatError, match=r"value\[0\]\.Media\[1\] \(MediaID 2\)") as info:
        parse_list(path)
    assert info.value.line == line_of(path, '"MediaID": 2') - 1


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ([], "expected a JSON object with a 'value' array"),
        ({"@odata.context": CONTEXT, "value": {"MD5": md5("x")}}, "'value' array"),
        ({"@odata.context": CONTEXT}, "'value' array"),
        ({"@odata.context": CONTEXT, "value": [media(1), "x"]}, r"value\[1\]: expected a Media"),
        ({"@odata.context": CONTEXT, "Value": [], "value": []}, "field 'value' appears twice"),
    ],
)
def test_bad_document_shape(tmp_path: Path, document: Any, message: str) -> None:
    path = tmp_path / "v.json"
    path.write_text(json.dumps(document))
    with pytest.raises(ListFormatError, match=message):
        parse_list(path, format="vics")


def test_non_utf8_names_its_line(tmp_path: Path) -> None:
    path = write(tmp_path / "v.json", [media(1), media(2, Series="x")])
    path.write_bytes(path.read_bytes().replace(b'"Series": "x"', b'"Series": "\xff"'))
    with pytest.raises(ListFormatError, match="not UTF-8") as info:
        parse_list(path)
    lines = path.read_bytes().splitlines()
    assert info.value.line == next(i for i, line in enumerate(lines, 1) if b"\xff" in line)


def test_error_messages_do_not_repeat_hash_values(tmp_path: Path) -> None:
    path = write(tmp_path / "v.json", [media(1, MD5=md5("secret") + "0")])
    with pytest.raises(ListFormatError) as info:
        parse_list(path)
    assert md5("secret") not in str(info.value)


def test_kind_option_is_refused() -> None:
    with pytest.raises(ListFormatError, match="--kind is not used"):
        parse_list(DATA / "vics-export.json", kind="pdq")


# ---------------------------------------------------------------- size


def test_large_export_and_a_late_error_line(tmp_path: Path) -> None:
    many = [media(i, SHA1=sha1(str(i))) for i in range(20_000)]
    path = write(tmp_path / "v.json", many)
    parsed = parse_list(path)
    assert parsed.by_kind() == {"md5": 20_000, "sha1": 20_000}

    many[19_000]["SHA1"] = "zz"
    write(path, many)
    with pytest.raises(ListFormatError, match=r"value\[19000\]") as info:
        parse_list(path)
    assert info.value.line == line_of(path, '"MediaID": 19000,') - 1
