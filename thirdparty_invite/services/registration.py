"""Registration tokens: an account on the operator's homeserver for people who qualified.

A link or binding made with `--register` offers it. The person qualifies first, in a
browser session that has no Matrix ID yet (`WebSessionService.open_unregistered`): for a
binding, every provider step passed in that session (the callback records the passes and,
with no Matrix ID, grants nothing); for a link, holding a usable link. Only then is a
single-use token minted (`TokenMinter`, Synapse's admin API), under every cap at once:

- one token per external account per binding (an unused one that expired frees it);
- the per-account quota (`providers.max_matrix_ids_per_account`) counts the new account;
- a link's uses left count the tokens still live for it (the use is spent at the claim);
- `registration.daily_cap` tokens per UTC day.

The page registers the account with the token, proves the new Matrix ID with an OpenID
token as any sign-in does, and then: for a binding, `claim` grants it (the homeserver must
say the token made an account; the account's seat is taken then), for a link, the link is
claimed as usual. Unused tokens are deleted at the homeserver when they expire
(`purge_expired`). Every step is in the audit log; the token and the admin credentials
never are.
"""

from __future__ import annotations

import logging
import time

import attrs

from ..durations import now_ms
from ..matrix.ids import InvalidMatrixID, normalize_server_name, server_name_of
from ..matrix.registration_tokens import MinterUnavailable, TokenMinter
from ..registration_settings import RegistrationSettings
from ..storage import Storage
from ..storage.registrations import MintedToken, Refused, Reservation
from . import registration_texts as texts
from .bindings import BindingService, BindingView
from .grants import Grant, GrantService, GrantSource
from .links import LinkService
from .provider_checks import AccountInUse
from .provider_signin import BindingProgress, ProviderSignIn, secret_hash
from .web_sessions import NO_MATRIX_ID

MAX_TOKEN_LENGTH = 64
# The homeserver's clock and ours may disagree a little (and it may count in seconds).
CLOCK_SLACK_MS = 10_000


@attrs.frozen
class IssuedToken:
    token: str = attrs.field(repr=False)
    expires_at: int
    server_name: str
    client_url: str  # "" : the page discovers it from the server name
    signup_url: str  # "" : none offered


class RegistrationService:
    def __init__(
        self,
        settings: RegistrationSettings,
        storage: Storage,
        bindings: BindingService,
        links: LinkService,
        grants: GrantService,
        signin: ProviderSignIn,
        max_ids_per_account: int,
        minter: TokenMinter | None,
        log: logging.Logger,
    ) -> None:
        self.settings = settings
        self.storage = storage
        self.store = storage.registrations
        self.bindings = bindings
        self.links = links
        self.grants = grants
        self.signin = signin
        self.max_ids = max_ids_per_account
        self.minter = minter if settings.enabled else None
        self.log = log

    # -- the opt-in (commands, the panel) ------------------------------------------------

    def require_enabled(self) -> TokenMinter:
        if self.minter is None:
            raise texts.off()
        return self.minter

    async def offer(
        self, kind: str, item_id: int, rooms: tuple[str, ...], by: str, on: bool = True
    ) -> None:
        """Offer new accounts through a link ("link") or binding ("binding"), or stop
        (`on` False: tokens already minted stay usable until they expire)."""
        if on:
            self.require_enabled()
        await self.store.set_offers(kind, item_id, on)
        now = now_ms()
        action = "registration_offered" if on else "registration_withdrawn"
        for room_id in rooms:
            await self.storage.audit.add(
                now, by, action, room_id, f"{kind} {item_id}",
                f"new accounts on {self.settings.server_name or 'no homeserver'}",
            )  # fmt: skip

    async def offered(self, kind: str, item_id: int) -> bool:
        return self.minter is not None and await self.store.offers(kind, item_id)

    # -- the walk of someone without a Matrix account ----------------------------------------

    async def _offering_binding(self, public_id: str) -> BindingView:
        self.require_enabled()
        view = await self.bindings.get(public_id)
        if not await self.store.offers("binding", view.binding.id):
            raise texts.not_offered()
        return view

    async def start(self, session_id: str, public_id: str, provider_id: str) -> str:
        """The provider's sign-in URL for a person with no Matrix ID yet."""
        await self._offering_binding(public_id)
        return await self.signin.start(session_id, NO_MATRIX_ID, public_id, provider_id)

    async def progress(self, session_id: str, public_id: str) -> BindingProgress:
        await self._offering_binding(public_id)
        return await self.signin.progress(session_id, NO_MATRIX_ID, public_id)

    async def mint_for_binding(self, session_id: str, public_id: str) -> IssuedToken:
        view = await self._offering_binding(public_id)
        now = now_ms()
        session_hash = secret_hash(session_id)
        attempts = await self.storage.signins.attempts(session_hash, view.binding.id, now)
        passed = [attempts.get(p.id) for p in view.providers]
        if not view.providers or not all(
            a is not None and a.outcome == "passed" and a.external_id for a in passed
        ):
            raise texts.not_qualified()
        accounts = tuple(
            (p.id, str(a.external_id)) for p, a in zip(view.providers, passed, strict=True) if a
        )
        existing = await self.store.live_of_session(session_hash, view.binding.id, None, now)
        if existing is not None:  # the same browser asking again (a reload)
            return self._issued(existing)
        reservation = self._reservation(session_hash, now, binding_id=view.binding.id)
        reservation = attrs.evolve(reservation, accounts=accounts, max_ids=self.max_ids)
        actor = " ".join(f"{p}:{e}" for p, e in accounts)
        return await self._mint(reservation, view.binding.rooms, actor, view)

    async def mint_for_link(self, session_id: str, link_token: str) -> IssuedToken:
        self.require_enabled()
        link = await self.links.inspect(link_token)
        if not await self.store.offers("link", link.id):
            raise texts.not_offered()
        now = now_ms()
        if link.unusable_reason(now) is not None:
            raise texts.link_unusable()
        session_hash = secret_hash(session_id)
        existing = await self.store.live_of_session(session_hash, None, link.id, now)
        if existing is not None:
            return self._issued(existing)
        reservation = self._reservation(session_hash, now, link_id=link.id)
        reservation = attrs.evolve(reservation, link_uses_left=link.uses_left())
        return await self._mint(reservation, link.rooms, f"link {link.id}", None)

    def _reservation(
        self,
        session_hash: str,
        now: int,
        binding_id: int | None = None,
        link_id: int | None = None,
    ) -> Reservation:
        return Reservation(
            binding_id=binding_id,
            link_id=link_id,
            accounts=(),
            session_hash=session_hash,
            now=now,
            expires_at=now + int(self.settings.token_lifetime * 1000),
            day=_day(now),
            daily_cap=self.settings.daily_cap,
        )

    async def _mint(
        self, r: Reservation, rooms: tuple[str, ...], actor: str, view: BindingView | None
    ) -> IssuedToken:
        minter = self.require_enabled()
        try:
            token_id = await self.store.reserve(r)
        except Refused as e:
            raise self._refusal(e, view) from None
        try:
            minted = await minter.mint(1, r.expires_at)
        except MinterUnavailable as e:
            self.log.warning("No registration token: %s", e)
            await self.store.release(token_id, r.day)
            raise texts.unavailable(self.settings.server_name) from None
        except BaseException:
            await self.store.release(token_id, r.day)
            raise
        await self.store.minted(token_id, minted.token)
        for room_id in rooms:
            await self.storage.audit.add(
                r.now, actor, "registration_token_minted", room_id,
                f"registration token {token_id}",
                f"single use on {self.settings.server_name}, until {_iso(r.expires_at)}",
            )  # fmt: skip
        return IssuedToken(
            minted.token,
            r.expires_at,
            self.settings.server_name,
            self.settings.client_url,
            self.settings.signup_url,
        )

    def _refusal(self, refused: Refused, view: BindingView | None) -> Exception:
        provider = next(
            (p for p in (view.providers if view else ()) if p.id == refused.provider), None
        )
        if refused.why == "account_full" and provider is not None:
            return AccountInUse(provider, self.max_ids)
        if refused.why == "account_has_token":
            return texts.account_has_token(provider.display_name if provider else "This")
        if refused.why == "link_full":
            return texts.link_full()
        return texts.daily_cap(self.settings.server_name)

    def _issued(self, row: MintedToken) -> IssuedToken:
        assert row.token is not None
        s = self.settings
        return IssuedToken(row.token, row.expires_at, s.server_name, s.client_url, s.signup_url)

    # -- after the account exists -----------------------------------------------------------

    async def claim(self, user_id: str, token: str, link_token: str | None = None) -> Grant:
        """Admit the new account a token made (the page signed in with it): a binding's
        token grants as the binding would; a link's (with the link) claims the link."""
        minter = self.require_enabled()
        row = None
        if isinstance(token, str) and 0 < len(token) <= MAX_TOKEN_LENGTH:
            row = await self.store.by_token(token)
        if row is None or (row.binding_id is None and row.link_id is None):
            raise texts.token_unknown()
        if row.link_id is not None:
            return await self._claim_link(minter, user_id, row, link_token)
        assert row.binding_id is not None
        view = await self.bindings.by_id(row.binding_id)
        if view is None:
            raise texts.token_unknown()
        view = await self.bindings.get(view.binding.public_id)  # removed: said as for a link
        await self._check_claimant(minter, user_id, row)
        providers = {p.id: p for p in view.providers}
        binding_id = view.binding.id

        async def spend(conn: object, at: int) -> None:
            if not await self.store.claim(conn, row.id, user_id, at):  # type: ignore[arg-type]
                raise texts.token_claimed()
            for provider_id, external_id in row.accounts:
                if not await self.storage.signins.take_account_slot(
                    conn,  # type: ignore[arg-type]
                    binding_id, provider_id, external_id, user_id, self.max_ids, at,
                ):  # fmt: skip
                    raise AccountInUse(providers[provider_id], self.max_ids)

        source = GrantSource(
            binding_id=binding_id, external_id=" ".join(f"{p}:{e}" for p, e in row.accounts)
        )
        grant = await self.grants.grant(user_id, view.binding.rooms, source, spend)
        if grant.first:
            await self._audit_claim(user_id, row, grant.rooms, f"binding {view.binding.public_id}")
        return grant

    async def _claim_link(
        self, minter: TokenMinter, user_id: str, row: MintedToken, link_token: str | None
    ) -> Grant:
        """The link's claim, which spends its use; the token then stops holding one."""
        link = await self.links.inspect(link_token or "")
        if link.id != row.link_id:
            raise texts.token_unknown()
        await self._check_claimant(minter, user_id, row)
        result = await self.links.claim(link_token or "", user_id)
        async with self.storage.db.acquire() as conn:
            first = await self.store.claim(conn, row.id, user_id, now_ms())
        if first:
            await self._audit_claim(user_id, row, result.link.rooms, f"link {link.id}")
        return Grant(id=result.grant_id, first=result.first_claim, rooms=result.link.rooms)

    async def _check_claimant(self, minter: TokenMinter, user_id: str, row: MintedToken) -> None:
        """The claimant is the account the token made: on our server, the token's first
        claimant, the token spent at the homeserver, and the account newer than the token."""
        if not self._on_our_server(user_id):
            raise texts.wrong_server(self.settings.server_name)
        if row.claimed_by is not None and row.claimed_by != user_id:
            raise texts.token_claimed()
        if row.used_at is None:
            assert row.token is not None
            try:
                info = await minter.get(row.token)
            except MinterUnavailable as e:
                self.log.warning("Could not read a registration token: %s", e)
                raise texts.unavailable(self.settings.server_name) from None
            if info is None or info.completed < 1:
                raise texts.token_not_used()
            await self.store.mark_used(row.id, now_ms())
        if row.claimed_by is None:
            await self._require_new_account(minter, user_id, row)

    async def _audit_claim(
        self, user_id: str, row: MintedToken, rooms: tuple[str, ...], source: str
    ) -> None:
        now = now_ms()
        for room_id in rooms:
            await self.storage.audit.add(
                now, user_id, "registration_token_claimed", room_id,
                f"registration token {row.id}", source,
            )  # fmt: skip

    async def _require_new_account(
        self, minter: TokenMinter, user_id: str, row: MintedToken
    ) -> None:
        """The account claiming a token must have been made after the token was (with it,
        since the homeserver requires a token): an older account is not the new one."""
        try:
            created_at = await minter.account_created_at(user_id)
        except MinterUnavailable as e:
            self.log.warning("Could not read a new account: %s", e)
            raise texts.unavailable(self.settings.server_name) from None
        if created_at is None or created_at < row.minted_at - CLOCK_SLACK_MS:
            raise texts.not_the_new_account()

    def _on_our_server(self, user_id: str) -> bool:
        try:
            server = normalize_server_name(server_name_of(user_id))
        except InvalidMatrixID:
            return False
        return server == normalize_server_name(self.settings.server_name)

    # -- housekeeping ----------------------------------------------------------------------

    async def purge_expired(self) -> int:
        """Delete expired tokens nobody used, at the homeserver and here; how many. One the
        homeserver says made an account is kept (its external account got its one token)."""
        if self.minter is None:
            return 0
        deleted = 0
        now = now_ms()
        for row in await self.store.expired_unused(now):
            if row.token is None:  # the homeserver was never answered: nothing to delete
                await self.store.release(row.id, None)
                continue
            try:
                info = await self.minter.get(row.token)
                if info is not None and info.completed > 0:
                    await self.store.mark_used(row.id, now)
                    continue
                if info is not None:
                    await self.minter.delete(row.token)
            except MinterUnavailable as e:
                self.log.warning("Expired registration tokens not deleted now: %s", e)
                return deleted
            await self.store.release(row.id, None)  # the day's count stays: it was minted
            await self.storage.audit.add(
                now, "", "registration_token_deleted", None, f"registration token {row.id}",
                "expired unused",
            )  # fmt: skip
            deleted += 1
        return deleted

    async def close(self) -> None:
        if self.minter is not None:
            await self.minter.close()


def _day(now: int) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(now / 1000))


def _iso(at: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(at / 1000))
