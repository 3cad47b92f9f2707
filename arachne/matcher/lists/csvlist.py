"""CSV hash lists: a header row, then one row per item.

Recognised columns (any order, any subset with at least one hash column, names matched
case-insensitively, other columns ignored)::

    md5, sha1, sha256, pdq    hashes of one item: each non-empty cell becomes one entry
    category                  shared by the row's entries
    id                        the list's own reference for the item (stored as external_id)
    threshold                 PDQ distance for this row's PDQ hash (ignored for exact hashes)

Blank rows are skipped; a row with no hash at all is refused, as it usually means a
broken export. A UTF-8 byte-order mark (Excel writes one) is dropped.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from arachne.matcher.lists.base import (
    HASH_KINDS,
    MAX_CATEGORY,
    MAX_EXTERNAL_ID,
    MAX_PDQ_THRESHOLD,
    ListEntry,
    ListImporter,
    check_text,
    check_threshold,
    iter_lines,
    normalise_hash,
)

_META_COLUMNS = ("category", "id", "threshold")


@dataclass(frozen=True)
class CsvListConfig:
    delimiter: str = ","
    """Field separator; a comma unless a future option says otherwise."""


def _header_names(line: str, delimiter: str) -> list[str]:
    row = next(csv.reader([line], delimiter=delimiter), [])
    return [cell.strip().lower() for cell in row]


class CsvListImporter(ListImporter):
    name = "csv"
    config_cls = CsvListConfig
    config: CsvListConfig

    @classmethod
    def sniff(cls, head: str, path: Path) -> bool:
        if path.suffix.lower() == ".csv":
            return True
        for line in head.splitlines():
            if line.strip():
                return any(name in HASH_KINDS for name in _header_names(line, ","))
        return False

    def parse(self, path: Path) -> list[ListEntry]:
        lines = self._physical_lines(path)
        reader = csv.reader(lines, delimiter=self.config.delimiter, strict=True)
        columns: dict[str, int] | None = None
        entries: list[ListEntry] = []
        try:
            for row in reader:
                if not any(cell.strip() for cell in row):
                    continue
                if columns is None:
                    columns = self._columns(path, reader.line_num, row)
                    continue
                try:
                    entries.extend(self._row_entries(columns, row))
                except ValueError as exc:
                    raise self.error(path, reader.line_num, str(exc)) from None
        except csv.Error as exc:
            raise self.error(path, reader.line_num, f"CSV syntax: {exc}") from None
        if columns is None:
            raise self.error(path, None, "empty CSV: no header row")
        return entries

    @staticmethod
    def _physical_lines(path: Path) -> Iterator[str]:
        # csv wants the newline back to join quoted multi-line cells; line_num stays exact.
        for _number, text in iter_lines(path):
            yield text + "\n"

    def _columns(self, path: Path, line: int, row: list[str]) -> dict[str, int]:
        columns: dict[str, int] = {}
        for index, cell in enumerate(row):
            name = cell.strip().lower()
            if name not in HASH_KINDS and name not in _META_COLUMNS:
                continue
            if name in columns:
                raise self.error(path, line, f"column {name!r} appears twice in the header")
            columns[name] = index
        if not any(name in HASH_KINDS for name in columns):
            raise self.error(
                path,
                line,
                f"no hash column in the header: expected one of {', '.join(HASH_KINDS)}",
            )
        return columns

    @staticmethod
    def _row_entries(columns: dict[str, int], row: list[str]) -> list[ListEntry]:
        def cell(name: str) -> str:
            index = columns.get(name)
            # Short rows are read as empty trailing cells, as spreadsheets write them.
            return row[index].strip() if index is not None and index < len(row) else ""

        category = check_text("category", cell("category"), MAX_CATEGORY)
        external_id = check_text("id", cell("id"), MAX_EXTERNAL_ID)
        raw_threshold = cell("threshold")
        threshold: int | None = None
        if raw_threshold:
            try:
                threshold = check_threshold(int(raw_threshold))
            except ValueError:
                raise ValueError(
                    f"threshold {raw_threshold!r} is not a whole number "
                    f"from 0 to {MAX_PDQ_THRESHOLD}"
                ) from None
        entries = []
        for kind in HASH_KINDS:
            value = cell(kind)
            if not value:
                continue
            entries.append(
                ListEntry(
                    kind,
                    normalise_hash(kind, value),
                    category,
                    external_id,
                    # A distance means nothing for exact hashes; keep it off them.
                    threshold if kind == "pdq" else None,
                )
            )
        if not entries:
            raise ValueError("row has no hash in any hash column")
        return entries
