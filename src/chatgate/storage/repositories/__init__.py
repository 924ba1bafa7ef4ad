"""One repository per aggregate; each method is a transaction returning records, not ORM objects."""

from chatgate.storage.repositories.accounts import AccountRepository
from chatgate.storage.repositories.offline import OfflineRepository
from chatgate.storage.repositories.owner import Owner
from chatgate.storage.repositories.roster import RosterRepository
from chatgate.storage.repositories.vcards import VCardRepository

__all__ = [
    "AccountRepository",
    "OfflineRepository",
    "Owner",
    "RosterRepository",
    "VCardRepository",
]
