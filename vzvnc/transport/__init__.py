"""Transports below the RFB core: plain TCP, or RFC 6455 WebSocket on the same port.

The RFB state machine sees bytes in and bytes out whatever the transport; framing
never leaks into it (DESIGN §7c).
"""
