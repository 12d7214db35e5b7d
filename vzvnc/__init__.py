"""vzvnc: a VNC console server for containers.

A program's terminal output is parsed by an xterm-grade emulator (``term/``),
rendered into a numpy framebuffer (``fb/``) and served to VNC viewers over RFB
(``rfb/``); keys and pointer events from viewers go back to the program.
"""

__version__ = "0.1.0"
