"""Administrators chatgate keeps: the `basic` and `digest` methods' users."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from chatgate.http.admin_options import AdminOptions
    from chatgate.storage.database import Database


class AdminAccounts:
    def __init__(self, db: Database, options: AdminOptions) -> None:
        self.db = db
        self.options = options
