"""The vzvnc exception tree.

    VzvncError                 root; carries an ``os.EX_*`` exit code
    ├── ConfigError            bad option or file: fix it, do not retry (EX_CONFIG)
    ├── ProtocolError          RFB went wrong
    │   ├── RemoteProtocolError  the peer broke RFB: drop that client, log INFO
    │   └── LocalProtocolError   we broke RFB: a bug, log ERROR with traceback
    ├── AuthenticationError    the peer failed authentication (EX_NOPERM)
    ├── PtyError               the pty or its child could not be started (EX_OSERR)
    ├── ListenError            the listening socket could not be opened (EX_UNAVAILABLE)
    └── DomainStateError       the domain is not in a state for that (EX_UNAVAILABLE)

``OSError`` is translated into these once, at each I/O boundary.
"""

from __future__ import annotations

import os


class VzvncError(Exception):
    """Root of every error vzvnc raises on purpose."""

    exit_code: int = os.EX_SOFTWARE


class ConfigError(VzvncError):
    """A configuration value or command-line option is invalid; the message names it."""

    exit_code = os.EX_CONFIG


class ProtocolError(VzvncError):
    """Something went wrong in the RFB exchange."""

    exit_code = os.EX_PROTOCOL


class RemoteProtocolError(ProtocolError):
    """The peer sent something RFB does not allow; only that client is dropped."""


class LocalProtocolError(ProtocolError):
    """We were asked to do something RFB does not allow: a bug on our side."""


class AuthenticationError(VzvncError):
    """The client failed authentication."""

    exit_code = os.EX_NOPERM


class PtyError(VzvncError):
    """The pty or the program in it could not be started."""

    exit_code = os.EX_OSERR


class ListenError(VzvncError):
    """The address to listen on is taken or not ours to bind."""

    exit_code = os.EX_UNAVAILABLE


class DomainStateError(VzvncError):
    """The domain is not in a state that allows the operation (not running, already
    paused, ...)."""

    exit_code = os.EX_UNAVAILABLE


class DomainError(VzvncError):
    """A container or its cgroups could not be set up or managed; the message says why."""

    exit_code = os.EX_UNAVAILABLE
