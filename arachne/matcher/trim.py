"""Find and cut near-uniform borders (padding, letterboxing) around an image's content.

A white or black frame of 10% moves PDQ far past the match threshold, because PDQ hashes the
whole canvas. Hashing the content inside the frame as well, and querying both, recovers
those copies. Only the edges are looked at: a run of rows (or columns) that all sit close to
the edge's own colour, tolerant of JPEG noise, and never more than ``MAX_TRIM_FRACTION`` of
the side (a longer flat run is more likely sky or a studio backdrop than padding).
"""

from __future__ import annotations

from typing import overload

import numpy as np
from PIL import Image

MAX_TRIM_FRACTION = 0.25
"""At most this share of the width (height) is cut from each side; a longer run is kept."""

MIN_TRIM_FRACTION = 0.01
"""When no side loses at least this share, there is nothing worth a second hash."""

TOLERANCE = 24
"""Luma levels a border pixel may stray from the border's colour: JPEG ringing next to the
content reaches ~15 at q90 and more at lower qualities."""

MEDIAN_TOLERANCE = 3
"""Levels a border line's median may stray from the border's colour. Padding is one flat
colour; sky, walls and studio backdrops drift, so this stops a trim running into them."""

MIN_UNIFORM = 0.98
"""Share of a line's pixels within ``TOLERANCE`` for the line to count as border."""

Box = tuple[int, int, int, int]  # left, top, right, bottom (right and bottom exclusive)


def _as_luma(image: Image.Image | np.ndarray) -> np.ndarray:
    if isinstance(image, Image.Image):
        return np.asarray(image if image.mode == "L" else image.convert("L"))
    arr = np.asarray(image)
    if arr.ndim == 3:  # RGB(A) array: the same luma weights as PDQ
        rgb = arr[..., :3].astype(np.float32)
        return rgb @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    return arr


def _run(lines: np.ndarray, cap: int) -> int:
    """How many leading lines (rows of ``lines``) are border; 0 if the run exceeds ``cap``."""
    if cap < 1 or lines.shape[1] == 0:
        return 0
    first = lines[0].astype(np.int16)
    middle = first.size // 2  # the median by partition: np.median's overhead was most of it
    colour = int(np.partition(first, middle)[middle])
    if (np.abs(first - colour) <= TOLERANCE).mean() < MIN_UNIFORM:
        return 0  # the common case, decided on one line
    head = lines[: cap + 1].astype(np.int16)
    close = (np.abs(head - colour) <= TOLERANCE).mean(axis=1) >= MIN_UNIFORM
    steady = np.abs(np.median(head, axis=1) - colour) <= MEDIAN_TOLERANCE
    stops = np.flatnonzero(~(close & steady))
    return 0 if stops.size == 0 else int(stops[0])


def find_trim_box(luma: np.ndarray) -> Box | None:
    """The content's box inside near-uniform borders, or None when there is nothing to trim.

    Two rounds: the second measures each side only across the content found by the first,
    so a coloured caption bar between white side borders is still seen as uniform.
    """
    height, width = luma.shape[:2]
    if height < 8 or width < 8:
        return None
    cap_y, cap_x = int(height * MAX_TRIM_FRACTION), int(width * MAX_TRIM_FRACTION)
    left, top, right, bottom = 0, 0, width, height
    for _ in range(2):
        cols = luma[:, left:right]  # image rows, across the content's columns only
        rows = luma[top:bottom, :].T  # image columns, across the content's rows only
        box = (
            _run(rows, cap_x),
            _run(cols, cap_y),
            width - _run(rows[::-1], cap_x),
            height - _run(cols[::-1], cap_y),
        )
        if box == (left, top, right, bottom):
            break
        left, top, right, bottom = box
    cut = max(left / width, top / height, (width - right) / width, (height - bottom) / height)
    if cut < MIN_TRIM_FRACTION or right - left < 8 or bottom - top < 8:
        return None
    return left, top, right, bottom


@overload
def trim_borders(image: Image.Image) -> Image.Image | None: ...
@overload
def trim_borders(image: np.ndarray) -> np.ndarray | None: ...


def trim_borders(image: Image.Image | np.ndarray) -> Image.Image | np.ndarray | None:
    """``image`` without its near-uniform borders, or None when it has none to cut."""
    box = find_trim_box(_as_luma(image))
    if box is None:
        return None
    left, top, right, bottom = box
    if isinstance(image, Image.Image):
        return image.crop(box)
    return np.asarray(image)[top:bottom, left:right]
