"""Errors a person sees: a Matrix-style errcode, a sentence to act on, an HTTP status."""

from __future__ import annotations


class UserFacingError(Exception):
    """Raised by services; the web layer turns it into `{errcode, error}` with its status."""

    def __init__(self, errcode: str, message: str, http_status: int = 400) -> None:
        super().__init__(message)
        self.errcode = errcode
        self.message = message
        self.http_status = http_status
