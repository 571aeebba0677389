"""Figure layout with OpenCV: titled panels, colour bars, legends, rows and columns of panels.

Images are (H, W, 3) uint8 RGB numpy arrays. Everything is drawn at the image's own resolution,
so a figure costs a few milliseconds (cheap enough for a training hook).
"""

from typing import List, Optional, Sequence, Tuple

import cv2
import numpy as np

__all__ = [
    "BACKGROUND",
    "colormap",
    "enlarge",
    "wrap_text",
    "titled",
    "with_colorbar",
    "with_legend",
    "stack",
    "put_text",
]

# Background of title strips, colour bars and legends.
BACKGROUND = (32, 32, 32)
_FONT = cv2.FONT_HERSHEY_SIMPLEX
_FONT_SCALE = 0.42
_LINE_HEIGHT = 16


def colormap(values: np.ndarray, name: int = cv2.COLORMAP_VIRIDIS) -> np.ndarray:
    """Values in [0, 1] (any shape, clipped) -> (..., 3) uint8 RGB of an OpenCV colour map."""
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        return np.zeros((*values.shape, 3), dtype=np.uint8)
    levels = (np.clip(np.nan_to_num(values), 0.0, 1.0) * 255).astype(np.uint8).reshape(-1, 1)
    rgb = cv2.applyColorMap(levels, name).reshape(-1, 3)[:, ::-1]
    return np.ascontiguousarray(rgb).reshape(*values.shape, 3)


def put_text(
    canvas: np.ndarray,
    text: str,
    origin: Tuple[int, int],
    color=(255, 255, 255),
    scale: float = _FONT_SCALE,
) -> None:
    """Write `text` in place with its baseline's left end at `origin` (column, row)."""
    cv2.putText(canvas, text, origin, _FONT, scale, color, 1, cv2.LINE_AA)


def _text_width(text: str, scale: float = _FONT_SCALE) -> int:
    return cv2.getTextSize(text, _FONT, scale, 1)[0][0]


def enlarge(image: np.ndarray, min_width: int) -> np.ndarray:
    """`image` scaled up by a whole factor (nearest neighbour) until it is at least `min_width`
    pixels wide, so that titles and labels stay legible next to it."""
    factor = int(np.ceil(min_width / max(image.shape[1], 1)))
    if factor <= 1:
        return image
    return np.repeat(np.repeat(image, factor, axis=0), factor, axis=1)


def wrap_text(text: str, width: int) -> List[str]:
    """`text` split at word boundaries into lines at most `width` pixels wide when written."""
    lines, line = [], ""
    for word in text.split():
        candidate = f"{line} {word}".strip()
        if line and _text_width(candidate) > width - 10:
            lines.append(line)
            line = word
        else:
            line = candidate
    return lines + [line]


def titled(image: np.ndarray, title: str, min_lines: int = 1) -> np.ndarray:
    """`image` below a strip holding `title`, wrapped to the image width (`wrap_text`); the
    strip holds at least `min_lines` lines, so panels side by side can align."""
    lines = wrap_text(title, image.shape[1])
    strip = np.empty(
        (_LINE_HEIGHT * max(len(lines), min_lines) + 8, image.shape[1], 3), dtype=np.uint8
    )
    strip[:] = BACKGROUND
    for index, text in enumerate(lines):
        put_text(strip, text, (5, _LINE_HEIGHT * (index + 1)))
    return np.concatenate([strip, image], axis=0)


def with_colorbar(
    image: np.ndarray,
    colors: np.ndarray,
    ticks: Sequence[Tuple[float, str]],
    caption: str = "",
) -> np.ndarray:
    """`image` with a vertical colour bar on its right.

    Args:
        colors: (L, 3) uint8 RGB from the low end (bottom) to the high end (top) of the bar.
        ticks: (position in [0, 1] from bottom to top, label) pairs written beside the bar.
        caption: written above the bar (units, scale).
    """
    height = image.shape[0]
    label_width = max([_text_width(label) for _, label in ticks] + [0])
    width = max(14 + 6 + label_width + 6, _text_width(caption) + 8)
    panel = np.empty((height, width, 3), dtype=np.uint8)
    panel[:] = BACKGROUND
    top, bottom = 26, height - 10
    if bottom - top < 8:  # too low for a bar: the caption alone
        put_text(panel, caption, (4, min(height - 2, 14)))
        return np.concatenate([image, panel], axis=1)
    levels = np.linspace(1.0, 0.0, bottom - top)  # top of the bar = high end
    index = np.round(levels * (len(colors) - 1)).astype(int)
    panel[top:bottom, 4:18] = np.asarray(colors, np.uint8)[index][:, None, :]
    put_text(panel, caption, (4, 14))
    for position, label in ticks:
        row = int(round(bottom - 1 - position * (bottom - top - 1)))
        panel[row, 18:22] = 255
        put_text(panel, label, (24, min(max(row + 4, top + 4), bottom + 4)))
    return np.concatenate([image, panel], axis=1)


def with_legend(
    image: np.ndarray, entries: Sequence[Tuple[Sequence[int], str]], caption: str = ""
) -> np.ndarray:
    """`image` with a legend on its right: a colour swatch and a label per entry, top down.

    Entries that do not fit the image's height are left out and counted in a last line.
    """
    height = image.shape[0]
    rows = max((height - 24) // _LINE_HEIGHT, 1)
    shown = list(entries)
    if len(shown) > rows:
        hidden = len(shown) - (rows - 1)
        shown = shown[: rows - 1] + [(None, f"+ {hidden} more")]
    width = max([_text_width(label) + 30 for _, label in shown] + [_text_width(caption) + 8])
    panel = np.empty((height, width, 3), dtype=np.uint8)
    panel[:] = BACKGROUND
    put_text(panel, caption, (4, 14))
    for index, (color, label) in enumerate(shown):
        row = 24 + index * _LINE_HEIGHT
        if color is not None:
            panel[row + 2 : row + 13, 4:18] = np.asarray(color, np.uint8)
        put_text(panel, label, (24, row + 12))
    return np.concatenate([image, panel], axis=1)


def stack(
    images: Sequence[np.ndarray], axis: int = 0, gap: int = 4, fill: Optional[Tuple] = None
) -> np.ndarray:
    """Panels one below the other (axis 0) or side by side (axis 1), padded at the end (right
    or bottom) to a common size, `gap` pixels between them."""
    if not images:
        raise ValueError("stack needs at least one image")
    fill = BACKGROUND if fill is None else fill
    across = 1 - axis
    size = max(image.shape[across] for image in images)
    parts = []
    for index, image in enumerate(images):
        pad_shape = list(image.shape)
        pad_shape[across] = size - image.shape[across]
        padding = np.empty(pad_shape, dtype=np.uint8)
        padding[:] = fill
        parts.append(np.concatenate([image, padding], axis=across))
        if gap and index < len(images) - 1:
            gap_shape = list(parts[-1].shape)
            gap_shape[axis] = gap
            parts.append(np.zeros(gap_shape, dtype=np.uint8))
    return np.concatenate(parts, axis=axis)
