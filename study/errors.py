"""Exceptions of the study store."""

from __future__ import annotations


class StoreError(ValueError):
    """Bad input to the store (invalid spec, unknown study, invalid answer, ...); the message names the field."""


class AccessDenied(PermissionError):
    """The token does not grant access (unknown token, or an assignment that belongs to someone else)."""
