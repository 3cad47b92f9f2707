"""Project VIC (VICS) JSON hash-set exports: an OData document of Media objects.

VICS 2.0 (``@odata.context`` ``…/DataModels/2.0.xml/…/$metadata#Media``) lists Media in
``value``; VICS 1.x (``odata.metadata`` ``…#Cases``) lists Cases there, each holding its
Media in a ``Media`` array. Both are read::

    {"@odata.context": "…/$metadata#Media",
     "value": [{"MediaID": 1, "Category": 1, "MD5": "…", "SHA1": "…",
                "AlternativeHashes": [{"HashName": "SHA256", "HashValue": "…"},
                                      {"HashName": "PDQ", "HashValue": "…"}],
                "PhotoDNA": "…", "IsPrecategorized": "true", "MediaSize": 2835}]}

Mapping (keys matched case-insensitively; exporters differ): ``MD5`` → md5, ``SHA1`` →
sha1, ``AlternativeHashes`` entries named SHA256 / PDQ (or MD5 / SHA1; names compared
without case, dashes or spaces) → that kind; ``Category`` → category as text (``1``, not
a meaning: VICS and CAID number their categories differently); ``MediaID`` → external id.
``PhotoDNA`` and alternative hashes of other names are not hashes Arachne can match: they
are counted in ``skipped`` by name. Other fields are ignored. Empty or null hashes are
absent; a malformed one refuses the file, naming the line where its Media object starts.

A VICS export is the whole hash set, so it is a snapshot (importing a newer export
retracts what it no longer holds). A file with ``@odata.nextLink`` is one page of a paged
answer: it is read as a delta, so the pages it lacks are not retracted.

Memory: the standard ``json`` module holds the whole document (ijson is not a
dependency), several times the file's size; a VICS set of a few hundred thousand Media
is some hundreds of MB in Python objects, which is acceptable for an import command.
"""

from __future__ import annotations

import json
import json.decoder
import json.scanner
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from arachne.matcher.lists.base import (
    HASH_KINDS,
    MAX_CATEGORY,
    MAX_EXTERNAL_ID,
    ListEntry,
    ListImporter,
    ParsedList,
    check_text,
    dedupe,
    normalise_hash,
)

_SNIFF_ODATA = re.compile(r'"@?odata\.(?:context|metadata)"\s*:', re.IGNORECASE)
_SNIFF_VALUE = re.compile(r'"value"\s*:\s*\[\s*(?:\{|\])', re.IGNORECASE)
_SNIFF_MEDIA = re.compile(r'"(?:MediaID|MD5|SHA1|Media)"\s*:', re.IGNORECASE)
_NEXT_LINK = ("@odata.nextlink", "odata.nextlink")
_ALT_KINDS = {kind: kind for kind in HASH_KINDS}
_NAME_CHARS = re.compile(r"[^0-9a-z]")
_MAX_NAME = 40


@dataclass(frozen=True)
class VicsListConfig:
    """No options yet: the file says everything (kept for the importer contract)."""


class _MediaError(ValueError):
    """A bad Media object; ``path`` is its place in the document, for finding its line."""

    def __init__(self, path: tuple[int, ...], message: str) -> None:
        super().__init__(message)
        self.path = path


def _lower_keys(obj: dict[str, Any], where: str) -> dict[str, Any]:
    lowered = {key.lower(): value for key, value in obj.items()}
    if len(lowered) != len(obj):
        seen: set[str] = set()
        for key in obj:
            if key.lower() in seen:
                raise ValueError(f"{where}: field {key!r} appears twice (in another case)")
            seen.add(key.lower())
    return lowered


def _hash_name(name: Any) -> str:
    """A hash name as a short, printable label: ``SHA-256`` → ``sha256``."""
    label = _NAME_CHARS.sub("", str(name).lower())[:_MAX_NAME] if name is not None else ""
    return label or "unnamed"


def _text(label: str, value: Any, limit: int) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError(f"{label} must be a number or text, not {type(value).__name__}")
    return check_text(label, str(value), limit)


def _media_entries(media: dict[str, Any], skipped: dict[str, int]) -> list[ListEntry]:
    """One Media object's entries; unmatchable hashes are counted into ``skipped``."""
    fields = _lower_keys(media, "Media")
    category = _text("Category", fields.get("category"), MAX_CATEGORY)
    external_id = _text("MediaID", fields.get("mediaid"), MAX_EXTERNAL_ID)
    found: list[tuple[str, str, Any]] = [
        ("md5", "MD5", fields.get("md5")),
        ("sha1", "SHA1", fields.get("sha1")),
    ]
    if fields.get("photodna"):
        skipped["photodna"] = skipped.get("photodna", 0) + 1
    alternatives = fields.get("alternativehashes") or []
    if not isinstance(alternatives, list):
        raise ValueError("AlternativeHashes must be an array")
    for alt in alternatives:
        if not isinstance(alt, dict):
            raise ValueError("AlternativeHashes must hold {HashName, HashValue} objects")
        alt_fields = _lower_keys(alt, "AlternativeHashes")
        name = _hash_name(alt_fields.get("hashname"))
        value = alt_fields.get("hashvalue")
        if not value:
            continue
        kind = _ALT_KINDS.get(name)
        if kind is None:
            skipped[name] = skipped.get(name, 0) + 1
        else:
            found.append((kind, f"AlternativeHashes {name}", value))
    entries = []
    for kind, label, value in found:
        if value is None or value == "":
            continue
        if not isinstance(value, str):
            raise ValueError(f"{label} must be text, not {type(value).__name__}")
        try:
            entries.append(ListEntry(kind, normalise_hash(kind, value), category, external_id))
        except ValueError as exc:
            raise ValueError(f"{label}: {exc}") from None
    return entries


def _iter_media(document: Any) -> tuple[list[tuple[tuple[int, ...], Any]], bool]:
    """``[(path, media), ...]`` and whether the file is one page of a paged answer."""
    if not isinstance(document, dict):
        raise ValueError("expected a JSON object with a 'value' array (a VICS/OData export)")
    top = _lower_keys(document, "document")
    value = top.get("value")
    if not isinstance(value, list):
        raise ValueError("expected a JSON object with a 'value' array (a VICS/OData export)")
    paged = any(top.get(key) for key in _NEXT_LINK)
    found: list[tuple[tuple[int, ...], Any]] = []
    for i, item in enumerate(value):
        nested = None
        if isinstance(item, dict):
            nested = next((v for k, v in item.items() if k.lower() == "media"), None)
        if isinstance(nested, list):  # VICS 1.x: a Case with its Media
            found.extend(((i, j), media) for j, media in enumerate(nested))
        else:
            found.append(((i,), item))
    return found, paged


def _where(path: tuple[int, ...], media: Any) -> str:
    place = f"value[{path[0]}]" + (f".Media[{path[1]}]" if len(path) > 1 else "")
    if isinstance(media, dict):
        media_id = next((v for k, v in media.items() if k.lower() == "mediaid"), None)
        if isinstance(media_id, int | str) and len(str(media_id)) <= MAX_EXTERNAL_ID:
            place += f" (MediaID {media_id})"
    return place


def _object_starts(text: str) -> tuple[Any, dict[int, int]]:
    """Decode again, recording where each JSON object starts (``id(obj)`` → offset).

    Only used to put a line number on an error: the pure-Python scanner is slow, but the
    C one offers no hook for positions.
    """
    starts: dict[int, int] = {}
    decoder = json.JSONDecoder()

    def parse_object(s_and_end: tuple[str, int], *args: Any, **kwargs: Any) -> Any:
        obj, end = json.decoder.JSONObject(s_and_end, *args, **kwargs)
        starts[id(obj)] = s_and_end[1] - 1  # the offset of its "{"
        return obj, end

    decoder.parse_object = parse_object  # type: ignore[assignment]
    decoder.scan_once = json.scanner.py_make_scanner(decoder)  # type: ignore[attr-defined]
    return decoder.decode(text), starts


def _line_of(text: str, path: tuple[int, ...]) -> int | None:
    document, starts = _object_starts(text)
    try:
        media = dict(_iter_media(document)[0])[path]
    except (ValueError, KeyError):
        return None
    offset = starts.get(id(media))
    return None if offset is None else text.count("\n", 0, offset) + 1


class VicsListImporter(ListImporter):
    name = "vics"
    config_cls = VicsListConfig
    config: VicsListConfig

    @classmethod
    def sniff(cls, head: str, path: Path) -> bool:
        if not head.lstrip().startswith("{"):
            return False
        return bool(_SNIFF_ODATA.search(head)) or bool(
            _SNIFF_VALUE.search(head) and _SNIFF_MEDIA.search(head)
        )

    def parse(self, path: Path) -> list[ListEntry]:
        return self.read(path).entries

    def read(self, path: Path) -> ParsedList:
        text = self._load_text(path)
        try:
            document = json.loads(text)
        except json.JSONDecodeError as exc:
            raise self.error(
                path, exc.lineno, f"JSON syntax: {exc.msg} (column {exc.colno})"
            ) from None
        try:
            items, paged = _iter_media(document)
        except ValueError as exc:
            raise self.error(path, None, str(exc)) from None
        del document  # only the Media objects are needed from here on
        skipped: dict[str, int] = {}
        entries: list[ListEntry] = []
        try:
            for item_path, media in items:
                if not isinstance(media, dict):
                    raise _MediaError(
                        item_path,
                        f"{_where(item_path, media)}: expected a Media object, "
                        f"got {type(media).__name__}",
                    )
                try:
                    entries.extend(_media_entries(media, skipped))
                except ValueError as exc:
                    raise _MediaError(item_path, f"{_where(item_path, media)}: {exc}") from None
        except _MediaError as exc:
            raise self.error(path, _line_of(text, exc.path), str(exc)) from None
        return ParsedList(
            self.name,
            dedupe(entries),
            snapshot=not paged,
            skipped=dict(sorted(skipped.items())),
        )

    def _load_text(self, path: Path) -> str:
        data = path.read_bytes()
        try:
            return data.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            line = data.count(b"\n", 0, exc.start) + 1
            raise self.error(path, line, "not UTF-8 text") from None
