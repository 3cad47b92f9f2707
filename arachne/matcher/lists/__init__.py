"""Hash-list importers, found by format name (CONVENTIONS 4).

``parse_list(path)`` detects the format from the file's first bytes unless one is named,
parses the whole file (all or nothing) and returns a :class:`ParsedList`. Storing it is
:func:`arachne.store.hashlists.import_list`'s job.

A new format is one module with one :class:`ListImporter` subclass, added to ``_IMPORTERS``
below. Order matters for detection: the most specific sniffers come first.
"""

from __future__ import annotations

from pathlib import Path

from arachne.errors import ListFormatError
from arachne.matcher.lists.base import (
    HASH_KINDS,
    ListEntry,
    ListImporter,
    ParsedList,
    normalise_hash,
    read_head,
)
from arachne.matcher.lists.csvlist import CsvListConfig, CsvListImporter
from arachne.matcher.lists.ncmec import NcmecListConfig, NcmecListImporter
from arachne.matcher.lists.text import TextListConfig, TextListImporter
from arachne.matcher.lists.vics import VicsListConfig, VicsListImporter

__all__ = [
    "FORMATS",
    "HASH_KINDS",
    "CsvListConfig",
    "CsvListImporter",
    "ListEntry",
    "ListImporter",
    "NcmecListConfig",
    "NcmecListImporter",
    "ParsedList",
    "TextListConfig",
    "TextListImporter",
    "VicsListConfig",
    "VicsListImporter",
    "detect_format",
    "normalise_hash",
    "parse_list",
]


def _registry(*importers: type[ListImporter]) -> dict[str, type[ListImporter]]:
    """Format name → importer, refusing two importers with one name at import time."""
    registry: dict[str, type[ListImporter]] = {}
    for importer in importers:
        if importer.name in registry:
            raise RuntimeError(
                f"list format {importer.name!r} is claimed by both "
                f"{registry[importer.name].__qualname__} and {importer.__qualname__}"
            )
        registry[importer.name] = importer
    return registry


# Structured formats first, recognised by their content whatever the file is called
# (NCMEC: an XML root or namespace; VICS: a JSON object with OData keys or a Media array).
# Then CSV before text: a CSV header is a stronger signal than "looks like hex".
FORMATS: dict[str, type[ListImporter]] = _registry(
    NcmecListImporter, VicsListImporter, CsvListImporter, TextListImporter
)


def detect_format(path: Path) -> str:
    """The name of the first format whose sniffer accepts ``path``'s head."""
    path = Path(path)
    try:
        head = read_head(path)
    except OSError as exc:
        raise ListFormatError(str(path), None, f"cannot read: {exc.strerror or exc}") from None
    for name, importer in FORMATS.items():
        if importer.sniff(head, path):
            return name
    raise ListFormatError(
        str(path),
        None,
        f"unrecognised list format; name one with --format ({', '.join(FORMATS)})",
    )


def parse_list(path: Path, format: str | None = None, kind: str | None = None) -> ParsedList:
    """Parse a whole list file; raises ListFormatError and returns nothing if any line is bad.

    ``kind`` is the hash kind of bare hex lines in text lists (see ``text.py``); formats
    that name kinds themselves refuse it rather than ignore it.
    """
    path = Path(path)
    name = format if format is not None else detect_format(path)
    importer_cls = FORMATS.get(name)
    if importer_cls is None:
        raise ListFormatError(
            str(path), None, f"unknown list format {name!r} (known: {', '.join(FORMATS)})"
        )
    try:
        importer = importer_cls.from_options(kind=kind)
    except ValueError as exc:
        raise ListFormatError(str(path), None, str(exc)) from None
    try:
        return importer.read(path)
    except OSError as exc:
        raise ListFormatError(str(path), None, f"cannot read: {exc.strerror or exc}") from None
