"""Colour resolution: the stored cell colours (see ``cells.py``) to RGB.

This module owns the xterm 256-colour palette, the default foreground and
background, and the rules that turn a cell's (fg, bg, attrs) into the two RGB
colours the renderer paints with:

1. default colours become ``DEFAULT_FG`` / ``DEFAULT_BG``; indexed colours come
   from the palette; truecolour is used as is;
2. BOLD with an indexed foreground 0..7 uses the bright variant 8..15
   (xterm's ``boldColors``);
3. REVERSE swaps foreground and background (after the steps above);
4. DIM blends the (possibly swapped) foreground halfway toward the background;
5. INVISIBLE makes the foreground equal to the background.

Everything is vectorised over arrays of any shape. ``palette_rgb`` and
``xterm_colour_spec`` serve the terminal's answers to OSC 4/10/11/12 colour queries.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from vzvnc.term import cells

DEFAULT_FG: tuple[int, int, int] = (229, 229, 229)
DEFAULT_BG: tuple[int, int, int] = (0, 0, 0)

# xterm's default resources for colours 0..15 (XTerm-col.ad / charproc.c).
_ANSI16: tuple[tuple[int, int, int], ...] = (
    (0, 0, 0),
    (205, 0, 0),
    (0, 205, 0),
    (205, 205, 0),
    (0, 0, 238),
    (205, 0, 205),
    (0, 205, 205),
    (229, 229, 229),
    (127, 127, 127),
    (255, 0, 0),
    (0, 255, 0),
    (255, 255, 0),
    (92, 92, 255),
    (255, 0, 255),
    (0, 255, 255),
    (255, 255, 255),
)
_CUBE_LEVELS = (0, 95, 135, 175, 215, 255)

U8Array = npt.NDArray[np.uint8]


def xterm_palette() -> U8Array:
    """Return xterm's 256 colours as a fresh ``(256, 3)`` uint8 array."""
    table = np.zeros((256, 3), dtype=np.uint8)
    table[:16] = _ANSI16
    levels = np.array(_CUBE_LEVELS, dtype=np.uint8)
    index = np.arange(216)
    table[16:232, 0] = levels[index // 36]
    table[16:232, 1] = levels[(index // 6) % 6]
    table[16:232, 2] = levels[index % 6]
    greys = (8 + 10 * np.arange(24)).astype(np.uint8)
    table[232:, :] = greys[:, None]
    return table


_PALETTE = xterm_palette()
_PALETTE.setflags(write=False)


def palette_rgb(index: int) -> tuple[int, int, int]:
    """Entry ``index`` (0..255) of xterm's default palette as an (r, g, b) tuple."""
    red, green, blue = (int(v) for v in _PALETTE[index])
    return red, green, blue


def xterm_colour_spec(colour: tuple[int, int, int]) -> str:
    """``(r, g, b)`` in the X11 form xterm uses in colour reports: ``rgb:RRRR/GGGG/BBBB``.

    Each 8-bit channel is scaled to 16 bits by repeating it (0xe5 -> ``e5e5``).
    """
    return "rgb:" + "/".join(f"{value:02x}{value:02x}" for value in colour)


def _to_rgb(colour: npt.NDArray[np.uint32], default: tuple[int, int, int]) -> U8Array:
    """Resolve encoded colours to RGB, ``default`` for the default kind (and unknown kinds)."""
    colour = colour.astype(np.uint32, copy=False)
    kind = colour >> 24
    out = np.empty((*colour.shape, 3), dtype=np.uint8)
    out[...] = default
    is_indexed = kind == cells.COLOUR_INDEXED
    if is_indexed.any():
        out[is_indexed] = _PALETTE[colour[is_indexed] & 0xFF]
    is_rgb = kind == cells.COLOUR_RGB
    if is_rgb.any():
        value = colour[is_rgb]
        out[is_rgb, 0] = (value >> 16) & 0xFF
        out[is_rgb, 1] = (value >> 8) & 0xFF
        out[is_rgb, 2] = value & 0xFF
    return out


def resolve_colours(
    fg: npt.NDArray[np.uint32], bg: npt.NDArray[np.uint32], attrs: npt.NDArray[np.uint16]
) -> tuple[U8Array, U8Array]:
    """Return ``(fg_rgb, bg_rgb)``, uint8 arrays of ``fg.shape + (3,)``.

    The rules and their order are in the module docstring.
    """
    fg = np.asarray(fg, dtype=np.uint32)
    bg = np.asarray(bg, dtype=np.uint32)
    attrs = np.asarray(attrs, dtype=np.uint16)

    bold = (attrs & cells.ATTR_BOLD) != 0
    brighten = bold & ((fg >> 24) == cells.COLOUR_INDEXED) & ((fg & 0xFFFFFF) < np.uint32(8))
    if brighten.any():
        fg = np.where(brighten, fg + np.uint32(8), fg)

    fg_rgb = _to_rgb(fg, DEFAULT_FG)
    bg_rgb = _to_rgb(bg, DEFAULT_BG)

    reverse = (attrs & cells.ATTR_REVERSE) != 0
    if reverse.any():
        swapped_fg = np.where(reverse[..., None], bg_rgb, fg_rgb)
        bg_rgb = np.where(reverse[..., None], fg_rgb, bg_rgb)
        fg_rgb = swapped_fg

    dim = (attrs & cells.ATTR_DIM) != 0
    if dim.any():
        half = ((fg_rgb.astype(np.uint16) + bg_rgb.astype(np.uint16)) // 2).astype(np.uint8)
        fg_rgb = np.where(dim[..., None], half, fg_rgb)

    invisible = (attrs & cells.ATTR_INVISIBLE) != 0
    if invisible.any():
        fg_rgb = np.where(invisible[..., None], bg_rgb, fg_rgb)

    return fg_rgb, bg_rgb
