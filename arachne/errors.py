"""Every Arachne exception, in one module."""

from __future__ import annotations


class ArachneError(Exception):
    """Base class: an error an operator can read and act on."""


class ConfigError(ArachneError):
    """Settings or a configuration file are wrong."""


class ListFormatError(ArachneError):
    """A hash-list file is malformed; nothing from it was imported."""

    def __init__(self, path: str, line: int | None, message: str) -> None:
        self.path = path
        self.line = line
        self.message = message
        where = f"{path}:{line}" if line is not None else path
        super().__init__(f"{where}: {message}")


class UnknownCampaign(ArachneError):
    """No campaign has that name."""


class CampaignExists(ArachneError):
    """A campaign with that name already exists."""


class DeliveryError(ArachneError):
    """A notice could not be delivered (it stays pending and is retried).

    ``transient`` says whether trying again later may succeed (SMTP 4xx, connection refused
    or dropped, timeouts, HTTP 5xx/429) or not without a change (SMTP 5xx for the recipient,
    HTTP 4xx, a malformed address). Defaults to True: the old behaviour, retry.
    """

    def __init__(self, message: str, *, transient: bool = True) -> None:
        super().__init__(message)
        self.transient = transient


class XarfInvalid(ArachneError):
    """A rendered XARF report failed the reference validator; nothing is sent."""

    def __init__(self, message: str, errors: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.errors = errors


class BootstrapError(ArachneError):
    """The RDAP bootstrap could not be refreshed (the previous snapshot is kept)."""


class StoreBusy(ArachneError):
    """Another process holds a store-wide lock (e.g. it is sending notices right now)."""


class CampaignBusy(ArachneError):
    """Another process is running this campaign right now."""


class RunStateError(ArachneError):
    """A run cannot go to the asked state (resume a run that is not paused, ...)."""
