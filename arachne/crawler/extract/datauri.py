"""``data:`` image URIs, decoded in memory (base64 or percent-encoded), size-capped."""

from __future__ import annotations

import base64
import binascii
from urllib.parse import unquote_to_bytes


class DataURIError(ValueError):
    """A data: URI that is not a decodable image within the cap; ``reason`` says why."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


def decode_data_uri(uri: str, max_bytes: int) -> tuple[str, bytes]:
    """(media type, bytes) of an ``image/*`` data: URI; DataURIError otherwise."""
    uri = uri.strip()
    if uri[:5].lower() != "data:" or "," not in uri:
        raise DataURIError("bad_data_uri", "not a data: URI")
    header, payload = uri[5:].split(",", 1)
    params = [p.strip() for p in header.split(";")]
    media_type = (params[0] or "text/plain").lower()
    if not media_type.startswith("image/"):
        raise DataURIError("not_an_image", f"media type {media_type}")
    is_base64 = any(p.lower() == "base64" for p in params[1:])
    # Refuse before decoding: the decoded size is known from the encoded length.
    estimate = len(payload) * 3 // 4 if is_base64 else len(payload)
    if estimate > max_bytes + 3:
        raise DataURIError("too_large", f"about {estimate} bytes > {max_bytes}")
    try:
        if is_base64:
            raw = unquote_to_bytes(payload).translate(None, b" \t\r\n")
            data = base64.b64decode(raw, validate=True)
        else:
            data = unquote_to_bytes(payload)
    except (binascii.Error, ValueError) as exc:
        raise DataURIError("bad_data_uri", str(exc)) from exc
    if len(data) > max_bytes:
        raise DataURIError("too_large", f"{len(data)} bytes > {max_bytes}")
    if not data:
        raise DataURIError("empty", "no data")
    return media_type, data
