"""Consoles for containers that LXC or libvirt started: a keeper per console (``keeper.py``)."""
