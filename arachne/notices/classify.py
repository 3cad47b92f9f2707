"""Hash-list categories -> the XARF ``csam`` classification (baseline, A1, A2, B1, B2).

XARF's classification is the industry grid: letter = apparent age (A prepubescent,
B pubescent), digit = what is shown (1 sex act, 2 lascivious exhibition); ``baseline`` is
material illegal everywhere without finer grading. Lists grade differently, so each list
category goes through a table. Keys are matched case-insensitively with surrounding
whitespace ignored.

Built-in table (``DEFAULT_TABLE``):

=====================  ==========  =================================================
list category          XARF        why
=====================  ==========  =================================================
``A1`` ``A2``          same        the XARF grid itself (NCMEC-style letters)
``B1`` ``B2``          same
``baseline``           baseline
``csam``               baseline    ungraded
``1`` (VICS / Project  baseline    "child abuse material": no age or act grading
VIC category 1)
``A`` ``B`` ``C``      baseline    IWF / UK categories grade severity of the act,
(IWF, UK CAID)                     not the child's age, so no A1..B2 can be derived
=====================  ==========  =================================================

Any other category (other VICS numbers, free text, an empty category) gets
``settings.classification_default`` (``baseline``). ``settings.classification_map`` adds
to or overrides the table (e.g. ``{"iwf-a" = "A1"}``); a value outside the five XARF
values is a ConfigError when the classifier is built at start-up.

An item in several lists takes the most specific grade by ``SEVERITY_ORDER``:
A1 > A2 > B1 > B2 > baseline.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

from arachne.errors import ConfigError

if TYPE_CHECKING:
    from arachne.settings import Settings

SEVERITY_ORDER: tuple[str, ...] = ("A1", "A2", "B1", "B2", "baseline")
"""Most specific first: an item in several lists gets the earliest of its grades."""

XARF_CLASSIFICATIONS = frozenset(SEVERITY_ORDER)
"""The values content-csam.json allows."""

DEFAULT_TABLE: Mapping[str, str] = {
    "a1": "A1",
    "a2": "A2",
    "b1": "B1",
    "b2": "B2",
    "baseline": "baseline",
    "csam": "baseline",
    "1": "baseline",
    "a": "baseline",
    "b": "baseline",
    "c": "baseline",
}
"""Built-in list category (normalised key) -> XARF classification; see the module doc."""

_RANK = {value: rank for rank, value in enumerate(SEVERITY_ORDER)}
_CANONICAL = {value.casefold(): value for value in SEVERITY_ORDER}


def _key(category: str) -> str:
    return category.strip().casefold()


def _canonical(value: str, where: str) -> str:
    try:
        return _CANONICAL[value.strip().casefold()]
    except KeyError:
        allowed = ", ".join(SEVERITY_ORDER)
        raise ConfigError(f"{where}: {value!r} is not a XARF classification ({allowed})") from None


class Classifier:
    """Maps list categories to one XARF classification; built once, used per item."""

    def __init__(
        self, overrides: Mapping[str, str] | None = None, default: str = "baseline"
    ) -> None:
        table = dict(DEFAULT_TABLE)
        for category, value in (overrides or {}).items():
            table[_key(category)] = _canonical(value, f"ARACHNE_CLASSIFICATION_MAP[{category!r}]")
        self.table: Mapping[str, str] = table
        self.default = _canonical(default, "ARACHNE_CLASSIFICATION_DEFAULT")

    @classmethod
    def from_settings(cls, settings: Settings) -> Classifier:
        """Raises ConfigError for values outside baseline/A1/A2/B1/B2."""
        return cls(settings.classification_map, settings.classification_default)

    def classify_one(self, category: str) -> str:
        return self.table.get(_key(category), self.default)

    def classify(self, categories: Iterable[str]) -> str:
        """The most specific grade among the categories; the default when there are none."""
        grades = [self.classify_one(c) for c in categories]
        return min(grades, key=_RANK.__getitem__) if grades else self.default
