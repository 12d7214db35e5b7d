"""The cell encoding shared by the terminal screen and the renderer.

A screen is four numpy arrays of shape (lines, columns):

- ``chars``  uint32: the Unicode code point shown in the cell (0x20 when blank).
  The right half of a wide character holds the same code point with the
  ``WIDE_RIGHT`` attribute set; the left half has ``WIDE_LEFT`` set.
- ``fg``, ``bg``  uint32: a colour, ``kind << 24 | payload`` where kind is
  ``COLOUR_DEFAULT`` (payload 0), ``COLOUR_INDEXED`` (payload 0..255, the xterm
  palette, 0..15 being the ANSI colours) or ``COLOUR_RGB`` (payload 0xRRGGBB).
- ``attrs``  uint16: the ``ATTR_*`` bits below (bits 0..10; 11..15 are free for
  the renderer's own use).

Colours are stored unresolved so that the palette, reverse video and bold-as-bright
are decided once, at render time.
"""

from __future__ import annotations

import numpy as np

CHAR_DTYPE = np.uint32
COLOUR_DTYPE = np.uint32
ATTR_DTYPE = np.uint16

BLANK = 0x20

COLOUR_DEFAULT = 0
COLOUR_INDEXED = 1
COLOUR_RGB = 2

DEFAULT_COLOUR = COLOUR_DEFAULT << 24

ATTR_BOLD = 1 << 0
ATTR_DIM = 1 << 1
ATTR_ITALIC = 1 << 2
ATTR_UNDERLINE = 1 << 3
ATTR_BLINK = 1 << 4
ATTR_REVERSE = 1 << 5
ATTR_INVISIBLE = 1 << 6
ATTR_STRIKE = 1 << 7
ATTR_WIDE_LEFT = 1 << 8
ATTR_WIDE_RIGHT = 1 << 9
# The cell has combining characters attached (``Terminal.combining_at``); the renderer
# sees a change of this bit when the first one arrives.
ATTR_COMBINING = 1 << 10


def indexed(index: int) -> int:
    """Encode palette entry ``index`` (0..255)."""
    return (COLOUR_INDEXED << 24) | (index & 0xFF)


def rgb(red: int, green: int, blue: int) -> int:
    """Encode a truecolour value."""
    return (COLOUR_RGB << 24) | ((red & 0xFF) << 16) | ((green & 0xFF) << 8) | (blue & 0xFF)
