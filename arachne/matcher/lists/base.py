"""What every list importer shares: hash kinds, the entry value, line reading, the base class.

A list format is one importer class (CONVENTIONS 4, after python-threatexchange's list
sources): a ``name``, a ``sniff`` that recognises a file from its first bytes, a frozen
config dataclass, and ``parse`` that reads the *whole* file and either returns every entry
or raises :class:`~arachne.errors.ListFormatError` naming the first bad line. Parsing is
all-or-nothing on purpose: a half-imported list would silently retract the missing half.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from arachne.errors import ListFormatError

HASH_KINDS: dict[str, int] = {"md5": 32, "sha1": 40, "sha256": 64, "pdq": 64}
"""Hash kind → length in hex digits. Values are always stored as lower-case hex."""

MAX_CATEGORY = 64
"""Longest category accepted (``hash_entries.category`` is VARCHAR(64))."""

MAX_EXTERNAL_ID = 200
"""Longest external id accepted (``hash_entries.external_id`` is VARCHAR(200))."""

MAX_PDQ_THRESHOLD = 128
"""Largest PDQ distance a list or entry may ask for; same bound as ``Settings.pdq_threshold``.
Unrelated PDQ hashes are about 128 bits apart, so anything above matches noise."""

HEAD_BYTES = 64 * 1024
"""How much of a file format detection reads."""

_HEX = re.compile(r"[0-9a-f]*")


@dataclass(frozen=True, slots=True)
class ListEntry:
    """One hash from a list. ``threshold`` is a per-entry PDQ distance (None: list default)."""

    kind: str
    value: str
    category: str | None = None
    external_id: str | None = None
    threshold: int | None = None

    @property
    def key(self) -> tuple[str, str]:
        return (self.kind, self.value)


@dataclass(frozen=True)
class ParsedList:
    """A parsed list file.

    ``snapshot`` means the file is the whole list: importing it retracts whatever the
    stored list holds that the file lacks (text, CSV and VICS exports). Delta formats (NCMEC
    XML) set it to False and name their removals instead: by hash in ``retractions``, or by
    the list's own item id in ``retracted_ids`` (matched against ``external_id``), because
    an NCMEC deletion record carries only the id, not the hashes.

    ``skipped`` counts hashes the file holds that Arachne cannot match (PhotoDNA, video
    hashes), by name, so an import can say what it left out rather than drop it silently.
    """

    format: str
    entries: list[ListEntry]
    retractions: list[ListEntry] = field(default_factory=list)
    snapshot: bool = True
    retracted_ids: list[str] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=dict)
    # Repeated hashes, collapsed (the first wins); ``conflicts`` are those whose repeats
    # disagreed on category, id or threshold: counted so an import can say so.
    duplicates: int = 0
    conflicts: int = 0

    def by_kind(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for entry in self.entries:
            counts[entry.kind] = counts.get(entry.kind, 0) + 1
        return counts


def normalise_hash(kind: str, value: str) -> str:
    """Return ``value`` as lower-case hex of ``kind``'s exact length, or raise ValueError.

    Messages never repeat the value: they end up in logs and terminals.
    """
    if kind not in HASH_KINDS:
        raise ValueError(f"unknown hash kind {kind!r} (known: {', '.join(HASH_KINDS)})")
    value = value.strip().lower()
    expected = HASH_KINDS[kind]
    if not _HEX.fullmatch(value):
        bad = next(c for c in value if c not in "0123456789abcdef")
        raise ValueError(f"{kind} hash contains {bad!r}, which is not a hex digit")
    if len(value) != expected:
        raise ValueError(f"{kind} hash must be {expected} hex digits, got {len(value)}")
    return value


def check_threshold(value: int) -> int:
    if not 0 <= value <= MAX_PDQ_THRESHOLD:
        raise ValueError(f"PDQ threshold must be between 0 and {MAX_PDQ_THRESHOLD}, got {value}")
    return value


def check_text(label: str, value: str | None, limit: int) -> str | None:
    """Strip an optional text field; empty means absent; over-long is refused, not cut."""
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    if len(value) > limit:
        raise ValueError(f"{label} is {len(value)} characters long; at most {limit} are stored")
    return value


def read_head(path: Path) -> str:
    """The first bytes of ``path`` as text, for sniffing (BOM dropped, bad bytes replaced)."""
    with path.open("rb") as f:
        return f.read(HEAD_BYTES).decode("utf-8-sig", errors="replace")


def iter_lines(path: Path) -> Iterator[tuple[int, str]]:
    """Yield ``(line_number, text)`` with the line ending (LF or CRLF) removed.

    Lines are decoded one at a time so a bad byte is reported on its own line, and a
    million-line list never sits in memory twice. A UTF-8 byte-order mark is dropped.
    """
    with path.open("rb") as f:
        for number, raw in enumerate(f, start=1):
            if number == 1 and raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise ListFormatError(
                    str(path), number, f"not UTF-8 text (byte {exc.start + 1} of the line)"
                ) from None
            yield number, text.rstrip("\r\n")


def first_significant_line(head: str) -> str | None:
    """The first line of ``head`` that is neither blank nor a ``#`` comment."""
    for line in head.splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            return stripped
    return None


def dedupe(entries: Iterable[ListEntry]) -> list[ListEntry]:
    """Collapse repeated (kind, value) pairs; the first occurrence's metadata wins."""
    return dedupe_counted(entries)[0]


def dedupe_counted(entries: Iterable[ListEntry]) -> tuple[list[ListEntry], int, int]:
    """``dedupe``, with how many repeats were dropped and how many of them disagreed with
    the first occurrence (category, external id or threshold)."""
    seen: dict[tuple[str, str], ListEntry] = {}
    duplicates = conflicts = 0
    for entry in entries:
        first = seen.setdefault((entry.kind, entry.value), entry)
        if first is not entry:
            duplicates += 1
            meta = (entry.category, entry.external_id, entry.threshold)
            conflicts += meta != (first.category, first.external_id, first.threshold)
    return list(seen.values()), duplicates, conflicts


class ListImporter(ABC):
    """One list format. Subclasses set ``name`` and ``config_cls`` and implement the rest."""

    name: ClassVar[str]
    config_cls: ClassVar[type[Any]]

    def __init__(self, config: Any) -> None:
        self.config = config

    @classmethod
    def from_options(cls, *, kind: str | None = None) -> ListImporter:
        """Build from the CLI's options; formats that name kinds themselves refuse ``kind``."""
        if kind is not None:
            raise ValueError(
                f"the {cls.name} format names each hash's kind itself; --kind is not used"
            )
        return cls(cls.config_cls())

    @classmethod
    @abstractmethod
    def sniff(cls, head: str, path: Path) -> bool:
        """Whether a file starting with ``head`` (decoded text) looks like this format."""

    @abstractmethod
    def parse(self, path: Path) -> list[ListEntry]:
        """Every entry in the file, or ListFormatError at the first malformed line."""

    def read(self, path: Path) -> ParsedList:
        """The file as a :class:`ParsedList`; delta formats override this for retractions."""
        entries, duplicates, conflicts = dedupe_counted(self.parse(path))
        return ParsedList(self.name, entries, duplicates=duplicates, conflicts=conflicts)

    def error(self, path: Path, line: int | None, message: str) -> ListFormatError:
        return ListFormatError(str(path), line, message)
