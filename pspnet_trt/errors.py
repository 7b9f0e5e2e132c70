"""Errors a user can act on. The CLI prints their message on one line (no traceback) and exits 2."""

from __future__ import annotations


class UserError(Exception):
    """Bad input or environment; the message names the problem and the fix."""


class UnknownModel(UserError, KeyError):
    """A model name that is not in the zoo (a KeyError too, for dict-like callers)."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])
