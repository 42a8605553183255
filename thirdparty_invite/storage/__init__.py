"""Storage: one store class per concept over maubot's plugin database."""

from __future__ import annotations

from mautrix.util.async_db import Database

from .audit import AuditStore
from .bindings import BindingStore
from .credentials import ProviderCredentialStore
from .grants import GrantStore
from .kept_tokens import KeptTokenStore
from .link_names import LinkNameStore
from .links import LinkStore
from .listings import ListingStore, SeatHolder
from .losses import Loss, LossStore
from .migrations import upgrade_table
from .queue import QueueStore
from .rechecks import RecheckState, RecheckStore
from .records import (
    AuditEntry,
    Binding,
    BindingAttempt,
    BindingRule,
    InviteLink,
    OAuthState,
    QueuedInvite,
    WebSession,
)
from .registrations import RegistrationStore
from .room_labels import RoomLabel, RoomLabelStore
from .room_people import GrantedPerson, RoomPeopleStore
from .rooms import RoomHoldings, RoomMove, RoomStore
from .sessions import SessionStore
from .signins import SignInStore
from .webhooks import WebhookDeliveryStore


class Storage:
    """The stores, sharing one database."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.links = LinkStore(db)
        self.grants = GrantStore()
        self.queue = QueueStore(db)
        self.sessions = SessionStore(db)
        self.audit = AuditStore(db)
        self.bindings = BindingStore(db)
        self.signins = SignInStore(db)
        self.rooms = RoomStore(db)
        self.webhooks = WebhookDeliveryStore(db)
        self.rechecks = RecheckStore(db)
        self.listings = ListingStore(db)
        self.losses = LossStore(db)
        self.kept_tokens = KeptTokenStore(db)
        self.credentials = ProviderCredentialStore(db)
        self.registrations = RegistrationStore(db)
        self.link_names = LinkNameStore(db)
        self.room_labels = RoomLabelStore(db)
        self.room_people = RoomPeopleStore(db)


__all__ = [
    "AuditEntry",
    "Binding",
    "BindingAttempt",
    "BindingRule",
    "GrantedPerson",
    "InviteLink",
    "Loss",
    "OAuthState",
    "QueuedInvite",
    "RecheckState",
    "RoomHoldings",
    "RoomLabel",
    "RoomMove",
    "SeatHolder",
    "Storage",
    "WebSession",
    "upgrade_table",
]
