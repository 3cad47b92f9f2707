"""NCMEC hash-sharing XML: the ``/v2/entries`` answer, saved to a file.

An entries file is a *delta*: the updates in a time window, not the whole list::

    <queryResult xmlns="https://hashsharing.ncmec.org/hashsharing/v2">
      <images count="2" maxTimestamp="2017-10-24T15:10:00Z">
        <image>
          <member id="42">Example Member</member>
          <timestamp>2017-10-24T15:00:00Z</timestamp>
          <id>image1</id>
          <classification>A1</classification>
          <fingerprints><md5>…</md5><sha1>…</sha1><pdq>…</pdq><pdna>…</pdna></fingerprints>
          <feedback>…</feedback>
        </image>
        <deletedImage><member id="43">…</member><id>image4</id><timestamp>…</timestamp>
        </deletedImage>
      </images>
      <videos>…</videos>
    </queryResult>

Mapping: each ``image`` gives one entry per md5 / sha1 / sha256 / pdq fingerprint, with
``classification`` as category and ``<member id>-<id>`` as external id (NCMEC ids are
unique per member only; python-threatexchange keys them the same way). An ``id`` attribute
on the record is accepted too. ``deletedImage`` carries only the id, so it retracts by
external id (``ParsedList.retracted_ids``); entries absent from the file are left alone.
When one id is both listed and deleted in a file, the later ``timestamp`` wins and deletion
wins a tie or a missing timestamp. PhotoDNA (``pdna``), fingerprints we do not know and
all video records are counted in ``skipped``, never stored: Arachne matches images only.

The file is parsed with expat as a stream (constant memory per record, exact line numbers)
and any DOCTYPE is refused before its internal subset is read: entity declarations are how
"billion laughs" and external-entity attacks get in, and NCMEC files never have one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn
from xml.parsers import expat

from arachne.errors import ListFormatError
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

_CHUNK = 1 << 20
_MAX_NAME = 40
_MAX_TEXT = 4096
"""Longest text accepted in a field we read; a hash is 64 characters, an id far less."""

_RECORDS = {
    "image": ("image", False),
    "deletedimage": ("image", True),
    "video": ("video", False),
    "deletedvideo": ("video", True),
}
_RECORD_FIELDS = {"id", "classification", "timestamp"}
_SKIPPED_NAMES = {"pdna": "photodna", "photodna": "photodna"}
_SNIFF = re.compile(r"hashsharing\.ncmec\.org|<(?:\w+:)?(?:queryResult|images|deletedImage)[\s>/]")


@dataclass(frozen=True)
class NcmecListConfig:
    """No options yet: the file says everything (kept for the importer contract)."""


@dataclass
class _Record:
    kind: str  # "image" or "video"
    deleted: bool
    line: int
    depth: int
    id: str | None = None
    member: str | None = None
    classification: str | None = None
    timestamp: str | None = None
    fingerprints: list[tuple[str, str, int]] = field(default_factory=list)


@dataclass
class _Image:
    timestamp: datetime | None
    entries: list[ListEntry]


class _Refused(Exception):
    """Raised inside an expat handler; carries the line the parser was on."""

    def __init__(self, line: int, message: str) -> None:
        super().__init__(message)
        self.line = line
        self.message = message


def _timestamp(text: str | None) -> datetime | None:
    # Unknown or odd timestamps only lose the ordering, so they are not an error.
    try:
        stamp = datetime.fromisoformat(text) if text else None
    except ValueError:
        return None
    # NCMEC writes UTC ("Z"); a bare time is taken as UTC so the two compare.
    return stamp.replace(tzinfo=UTC) if stamp and stamp.tzinfo is None else stamp


class _Reader:
    """Expat handlers and the state between them; one instance per file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.parser = expat.ParserCreate(namespace_separator=" ")
        self.parser.buffer_text = True
        self.parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
        self.parser.StartDoctypeDeclHandler = self._refuse_dtd
        self.parser.EntityDeclHandler = self._refuse_dtd
        self.parser.ExternalEntityRefHandler = self._refuse_dtd
        self.parser.StartElementHandler = self._start
        self.parser.EndElementHandler = self._end
        self.parser.CharacterDataHandler = self._text
        self.depth = 0
        self.saw_ncmec = False
        self.record: _Record | None = None
        self.in_fingerprints = False
        self.capture: tuple[str, int, int] | None = None  # (field name, start line, depth)
        self.text: list[str] = []
        self.text_len = 0
        self.images: dict[str, _Image] = {}
        self.deletions: dict[str, datetime | None] = {}
        self.hash_retractions: dict[str, list[ListEntry]] = {}
        self.skipped: dict[str, int] = {}

    # -------------------------------------------------------------- expat handlers

    def _line(self) -> int:
        return self.parser.CurrentLineNumber

    def _refuse_dtd(self, *_args: Any) -> NoReturn:
        raise _Refused(
            self._line(),
            "XML with a DOCTYPE or entity declarations is refused (it can hide an "
            "entity-expansion bomb or read local files); NCMEC files have none",
        )

    def _start(self, name: str, attrs: dict[str, str]) -> None:
        self.depth += 1
        local = name.rsplit(" ", 1)[-1].lower()
        record = self.record
        if record is None:
            if local in _RECORDS:
                kind, deleted = _RECORDS[local]
                self.record = _Record(kind, deleted, self._line(), self.depth, attrs.get("id"))
                self.saw_ncmec = True
            elif local in ("queryresult", "images", "videos"):
                self.saw_ncmec = True
            return
        level = self.depth - record.depth
        if level == 1:
            if local == "member":
                record.member = attrs.get("id")
            elif local == "fingerprints":
                self.in_fingerprints = True
            elif local in _RECORD_FIELDS:
                self._begin_capture(local)
        elif level == 2 and self.in_fingerprints:
            self._begin_capture("fp:" + local)

    def _begin_capture(self, name: str) -> None:
        self.capture = (name, self._line(), self.depth)
        self.text = []
        self.text_len = 0

    def _text(self, data: str) -> None:
        if self.capture is None:
            return
        self.text_len += len(data)
        if self.text_len > _MAX_TEXT:
            raise _Refused(
                self.capture[1], f"<{self.capture[0].removeprefix('fp:')}> text is too long"
            )
        self.text.append(data)

    def _end(self, _name: str) -> None:
        record = self.record
        if record is not None:
            level = self.depth - record.depth
            if self.capture is not None and self.capture[2] == self.depth:
                name, line, _depth = self.capture
                value = "".join(self.text).strip()
                self.capture = None
                if name.startswith("fp:"):
                    record.fingerprints.append((name[3:], value, line))
                else:
                    setattr(record, name, value or None)
            elif level == 1:
                self.in_fingerprints = False
            elif level == 0:
                self.record = None
                self._finish(record)
        self.depth -= 1

    # -------------------------------------------------------------- records

    def _skip(self, name: str, count: int = 1) -> None:
        self.skipped[name] = self.skipped.get(name, 0) + count

    def _finish(self, record: _Record) -> None:
        if record.kind == "video":
            # Arachne fetches images; a video's hashes could never match one.
            if record.fingerprints:
                self._skip("video", len(record.fingerprints))
            return
        what = "deletedImage" if record.deleted else "image"
        if not record.id:
            raise _Refused(record.line, f"{what} record has no <id>")
        try:
            key = check_text(
                "id",
                f"{record.member}-{record.id}" if record.member else record.id,
                MAX_EXTERNAL_ID,
            )
            category = check_text("classification", record.classification, MAX_CATEGORY)
        except ValueError as exc:
            raise _Refused(record.line, f"{what}: {exc}") from None
        assert key is not None  # record.id is non-empty
        entries = []
        for name, value, line in record.fingerprints:
            kind = name if name in HASH_KINDS else None
            if kind is None or not value:
                # PhotoDNA, fingerprints by reference (href) or by names we do not know.
                self._skip(_SKIPPED_NAMES.get(name, name[:_MAX_NAME]))
                continue
            try:
                entries.append(ListEntry(kind, normalise_hash(kind, value), category, key))
            except ValueError as exc:
                raise _Refused(line, f"{what} {record.id!r}: {exc}") from None
        stamp = _timestamp(record.timestamp)
        if record.deleted:
            old = self.deletions.get(key, stamp)
            # Two deletions of one id: keep the later, so a re-listing between them loses.
            self.deletions[key] = max(old, stamp) if old and stamp else (old or stamp)
            if entries:
                self.hash_retractions.setdefault(key, []).extend(entries)
            return
        previous = self.images.get(key)
        if previous is None or not (previous.timestamp and stamp and previous.timestamp > stamp):
            self.images[key] = _Image(stamp, entries)

    # -------------------------------------------------------------- driving

    def read(self) -> ParsedList:
        try:
            with self.path.open("rb") as f:
                while chunk := f.read(_CHUNK):
                    self.parser.Parse(chunk, False)
                self.parser.Parse(b"", True)
        except _Refused as exc:
            raise ListFormatError(str(self.path), exc.line, exc.message) from None
        except expat.ExpatError as exc:
            message = expat.errors.messages.get(exc.code, str(exc))
            raise ListFormatError(
                str(self.path), exc.lineno, f"XML syntax: {message} (column {exc.offset + 1})"
            ) from None
        if not self.saw_ncmec:
            raise ListFormatError(
                str(self.path),
                None,
                "no NCMEC records: expected <queryResult> with <images> of <image> records",
            )
        return self._result()

    def _result(self) -> ParsedList:
        retracted_ids: list[str] = []
        retractions: list[ListEntry] = []
        for key, deleted_at in self.deletions.items():
            image = self.images.get(key)
            if image and image.timestamp and deleted_at and image.timestamp > deleted_at:
                continue  # listed again after it was deleted
            self.images.pop(key, None)
            retracted_ids.append(key)
            retractions.extend(self.hash_retractions.get(key, ()))
        entries = dedupe(e for image in self.images.values() for e in image.entries)
        return ParsedList(
            NcmecListImporter.name,
            entries,
            retractions=dedupe(retractions),
            snapshot=False,
            retracted_ids=retracted_ids,
            skipped=dict(sorted(self.skipped.items())),
        )


class NcmecListImporter(ListImporter):
    name = "ncmec"
    config_cls = NcmecListConfig
    config: NcmecListConfig

    @classmethod
    def sniff(cls, head: str, path: Path) -> bool:
        return head.lstrip().startswith("<") and bool(_SNIFF.search(head))

    def parse(self, path: Path) -> list[ListEntry]:
        return self.read(path).entries

    def read(self, path: Path) -> ParsedList:
        return _Reader(path).read()
