"""A terminal's screen as a picture, exactly as a viewer would see it.

The same renderer and font the server uses draw the cells; Pillow only packs the
pixels into PNG. This is the public way for tests and tools to look at a screen.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from vzvnc.fb.font import default_atlas
from vzvnc.fb.render import CellSource, Renderer


def render_rgb(source: CellSource, *, scale: int = 1) -> np.ndarray:
    """(height, width, 3) uint8 RGB of the screen, cursor included."""
    renderer = Renderer(default_atlas(), source.columns, source.lines, scale=scale)
    renderer.render(source)
    return renderer.framebuffer.rgb_image()


def render_png(source: CellSource, *, scale: int = 1) -> bytes:
    out = io.BytesIO()
    Image.fromarray(render_rgb(source, scale=scale), "RGB").save(out, format="PNG")
    return out.getvalue()
