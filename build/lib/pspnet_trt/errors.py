"""Errors a user can act on. The CLI prints their message on one line (no traceback) and exits 2."""

from __future__ import annotations


class UserError(Exception):
    """Bad input or environment; the message names the problem and the fix."""
