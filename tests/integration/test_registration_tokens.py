"""Accounts for people without one, end to end on a Synapse that requires registration tokens.

This module starts its own Synapse (`enable_registration` and `registration_requires_token`
on: the session's Synapse keeps registration closed) and its own maubot. A room admin
binds a room with `--register`; a person with no Matrix account opens a session with no
Matrix ID, passes the provider step at the local GitHub, gets a single-use token minted
through Synapse's admin API, registers through the client-server API with it, proves the
new account with an OpenID token, and is invited. Also: nobody who did not qualify gets a
token, a token works once and not after its expiry, unused tokens are deleted at Synapse
when they expire, and the caps hold under parallel requests.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
import contextlib
import logging
from pathlib import Path
import secrets
import sqlite3
import time
from typing import Any

import aiohttp
import asyncpg
import pytest
import pytest_asyncio
from support.bot_commands import bind, command, post
from support.providers.github import Account, FakeGitHub
import yarl

from devtools.matrix_user import MatrixUser
from devtools.stack import RunningStack, running_stack
from devtools.synapse import SynapseServer
from devtools.web_client import signed_in_session
from thirdparty_invite.durations import now_ms
from thirdparty_invite.matrix.registration_tokens import SynapseAdminMinter
from thirdparty_invite.registration_settings import RegistrationSettings
from thirdparty_invite.services.registration import CLOCK_SLACK_MS, RegistrationService
from thirdparty_invite.storage import Storage
from thirdparty_invite.storage.registrations import Reservation

pytestmark = pytest.mark.integration

TOKEN_REGISTRATION = {"enable_registration": True, "registration_requires_token": True}
ORG = "regorg"
POSTGRES = "postgresql://postgres@127.0.0.1:5432/test"


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def reg_stack(
    tmp_path_factory: pytest.TempPathFactory, mbp: Path
) -> AsyncIterator[RunningStack]:
    """A stack of its own: Synapse with token registration on, maubot, the plugin."""
    async with running_stack(
        tmp_path_factory.mktemp("registration"), synapse_config=TOKEN_REGISTRATION, mbp=mbp
    ) as stack:
        yield stack


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def operator(reg_stack: RunningStack) -> MatrixUser:
    """A server admin of the Synapse: its access token is the one the plugin mints with."""
    return await reg_stack.user("operator", admin=True)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def github(reg_stack: RunningStack, operator: MatrixUser) -> AsyncIterator[FakeGitHub]:
    async with FakeGitHub() as server:
        server.auto_approve = True
        await configure(reg_stack, operator, server, daily_cap=1000)
        yield server


async def configure(
    stack: RunningStack, operator: MatrixUser, github: FakeGitHub, **registration: Any
) -> None:
    # One OAuth app per stack: two stacks share the local GitHub, and an app has one
    # callback URL.
    section = github.config_section(
        client_id=f"app-{stack.instance_id}",
        callback_url=f"{stack.web_url}api/oauth/callback",
    )
    await stack.configure(
        providers={"github": section},
        registration={
            "server_name": stack.synapse.server_name,
            "admin_api_url": stack.synapse.base_url,
            "admin_token": operator.access_token,
            "token_lifetime": "1m",
            **registration,
        },
    )
    await asyncio.sleep(1)  # maubot hands the config to the plugin, which rebuilds
    await stack.wait_web_ready()


def member(github: FakeGitHub, prefix: str = "member") -> Account:
    return github.add_account(f"{prefix}{secrets.token_hex(3)}").join_org(ORG)


async def qualify(
    http: aiohttp.ClientSession, github: FakeGitHub, binding: str, account: Account
) -> dict:
    """Open a session with no Matrix ID and pass the binding's GitHub step in it."""
    status, opened = await post(http, "api/register/session", {})
    assert status == 200, opened
    status, started = await post(
        http, "api/register/start", {"binding": binding, "provider": "github"}
    )
    assert status == 200, started
    github.sign_in_as(account)
    back = await github.visit_authorize(started["authorize_url"])
    async with http.get(back, allow_redirects=False) as resp:
        assert resp.status == 303, await resp.text()
        assert yarl.URL(resp.headers["Location"]).fragment == binding
    for _ in range(300):
        status, progress = await post(http, "api/register/progress", {"binding": binding})
        assert status == 200, progress
        if all(p["state"] != "checking" for p in progress["providers"]):
            return progress
        await asyncio.sleep(0.1)
    raise AssertionError(f"still checking: {progress}")


async def register(
    synapse: SynapseServer, token: str, localpart: str | None = None
) -> tuple[int, dict]:
    """Register through the client-server API as the page does: every stage of the flow
    that has the registration-token stage. (status, body): 200 with the new account."""
    url = f"{synapse.base_url}/_matrix/client/v3/register"
    body: dict[str, Any] = {
        "username": localpart or f"new-{secrets.token_hex(3)}",
        "password": secrets.token_urlsafe(12),
    }
    async with aiohttp.ClientSession() as http:
        async with http.post(url, json=body) as resp:
            answer = await resp.json()
        if resp.status != 401:
            return resp.status, answer
        session = answer["session"]
        flow = next(
            f["stages"] for f in answer["flows"] if "m.login.registration_token" in f["stages"]
        )
        for stage in flow:
            if stage in answer.get("completed", []):
                continue
            auth: dict[str, Any] = {"type": stage, "session": session}
            if stage == "m.login.registration_token":
                auth["token"] = token
            async with http.post(url, json={**body, "auth": auth}) as resp:
                answer = await resp.json()
            if resp.status == 200:
                answer["password"] = body["password"]
                return 200, answer
            if resp.status != 401 or "errcode" in answer:
                return resp.status, answer
        return resp.status, answer


async def admin_token_info(
    synapse: SynapseServer, operator: MatrixUser, token: str
) -> dict | None:
    url = f"{synapse.base_url}/_synapse/admin/v1/registration_tokens/{token}"
    headers = {"Authorization": f"Bearer {operator.access_token}"}
    async with aiohttp.ClientSession() as http, http.get(url, headers=headers) as resp:
        return None if resp.status == 404 else await resp.json()


async def all_tokens(synapse: SynapseServer, operator: MatrixUser) -> list[dict]:
    url = f"{synapse.base_url}/_synapse/admin/v1/registration_tokens"
    headers = {"Authorization": f"Bearer {operator.access_token}"}
    async with aiohttp.ClientSession() as http, http.get(url, headers=headers) as resp:
        return (await resp.json())["registration_tokens"]


def plugin_rows(stack: RunningStack, sql: str, *args: object) -> list[tuple]:
    with contextlib.closing(sqlite3.connect(stack.plugin_database())) as db:
        return db.execute(sql, args).fetchall()


async def invited(http: aiohttp.ClientSession, room_id: str, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        async with http.get("api/invites") as resp:
            invites = {i["room_id"]: i for i in (await resp.json())["invites"]}
        if room_id in invites and invites[room_id]["state"] != "pending":
            return invites[room_id]
        if time.monotonic() > deadline:
            raise AssertionError(f"no invite settled: {invites}")
        await asyncio.sleep(0.25)


async def test_a_qualifying_person_gets_an_account_and_an_invite(
    reg_stack: RunningStack, github: FakeGitHub, operator: MatrixUser
) -> None:
    stack = reg_stack
    room_id = await stack.room("Registration room")
    reply, binding = await bind(stack, room_id, f"github org:{ORG} --register")
    assert f"create one on {stack.synapse.server_name}" in reply, reply
    listed = await command(stack, room_id, "!invitebot bindings")
    assert f"offers new accounts on {stack.synapse.server_name}" in listed, listed
    async with stack.web_client() as http:
        status, offer = await post(http, "api/register/offer", {"binding": binding})
        assert status == 200 and offer["offered"] is True, offer
        assert offer["server_name"] == stack.synapse.server_name
        progress = await qualify(http, github, binding, member(github))
        assert progress["qualified"] is True, progress
        status, issued = await post(http, "api/register/token", {"binding": binding})
        assert status == 200, issued
        token = issued["token"]
        # Asked again by the same browser (a reload), the same token.
        status, again = await post(http, "api/register/token", {"binding": binding})
        assert status == 200 and again["token"] == token
    info = await admin_token_info(stack.synapse, operator, token)
    assert info is not None and info["uses_allowed"] == 1 and info["completed"] == 0
    assert abs(info["expiry_time"] - issued["expires_at"]) < 1000
    assert 50_000 < issued["expires_at"] - time.time() * 1000 <= 60_000

    status, account = await register(stack.synapse, token)
    assert status == 200, account
    newcomer = MatrixUser(
        stack.synapse.base_url, account["user_id"], account["access_token"], account["device_id"]
    )
    try:
        async with await signed_in_session(stack.web_url, newcomer) as http:
            status, claimed = await post(http, "api/register/claim", {"token": token})
            assert status == 202, claimed
            assert [r["room_id"] for r in claimed["rooms"]] == [room_id]
            assert (await invited(http, room_id))["outcome"] == "invited"
            # Claiming again changes nothing (the same grant).
            status, again = await post(http, "api/register/claim", {"token": token})
            assert status == 202 and again["grant_id"] == claimed["grant_id"]
    finally:
        await newcomer.close()
    await stack.admin.wait_for_membership(room_id, account["user_id"], "invite", timeout=60)
    actions = [
        row[0]
        for row in plugin_rows(
            stack, "SELECT action FROM audit_log WHERE room_id=? ORDER BY id", room_id
        )
    ]
    assert "registration_offered" in actions and "registration_token_minted" in actions
    assert "registration_token_claimed" in actions and "granted" in actions
    # The token is in no audit entry, and neither it nor the admin token in maubot's log
    # (maubot logs at DEBUG by default).
    assert not plugin_rows(stack, "SELECT 1 FROM audit_log WHERE detail LIKE ?", f"%{token}%")
    log = stack.maubot.log_text()
    assert "api/register/token" in log  # the request was logged, without what it carried
    assert token not in log and operator.access_token not in log


async def test_nobody_who_did_not_qualify_gets_a_token(
    reg_stack: RunningStack, github: FakeGitHub
) -> None:
    stack = reg_stack
    room_id = await stack.room("Closed room")
    _, binding = await bind(stack, room_id, f"github org:{ORG} --register")
    _, plain = await bind(stack, room_id, f"github org:{ORG}")
    outsider = github.add_account(f"outsider{secrets.token_hex(3)}")
    async with stack.web_client() as http:
        # No session with no Matrix ID: no token.
        status, refused = await post(http, "api/register/token", {"binding": binding})
        assert status == 401, refused
        progress = await qualify(http, github, binding, outsider)
        assert progress["qualified"] is False
        assert progress["providers"][0]["problem"] == "not_qualified"
        status, refused = await post(http, "api/register/token", {"binding": binding})
        assert (status, refused["errcode"]) == (403, "TPI_NOT_QUALIFIED")
        # A session that walked no provider step at all.
        await post(http, "api/register/session", {})
        status, refused = await post(http, "api/register/token", {"binding": binding})
        assert (status, refused["errcode"]) == (403, "TPI_NOT_QUALIFIED")
        # A binding made without --register offers nothing, even to a member.
        status, offer = await post(http, "api/register/offer", {"binding": plain})
        assert status == 200 and offer == {"offered": False}
        status, refused = await post(
            http, "api/register/start", {"binding": plain, "provider": "github"}
        )
        assert (status, refused["errcode"]) == (403, "TPI_REGISTRATION_NOT_OFFERED")
    # Someone signed in with a Matrix ID is not a session with no Matrix ID.
    someone = await stack.user("someone")
    async with await stack.signed_in(someone) as http:
        status, refused = await post(http, "api/register/token", {"binding": binding})
        assert status == 401, refused
    # The passes of one session count for no other.
    async with stack.web_client() as http:
        progress = await qualify(http, github, binding, member(github))
        assert progress["qualified"] is True
    async with stack.web_client() as other:
        await post(other, "api/register/session", {})
        status, refused = await post(other, "api/register/token", {"binding": binding})
        assert (status, refused["errcode"]) == (403, "TPI_NOT_QUALIFIED")


async def test_a_token_works_once_and_not_after_its_expiry(
    reg_stack: RunningStack, github: FakeGitHub, operator: MatrixUser
) -> None:
    stack = reg_stack
    room_id = await stack.room("Once room")
    _, binding = await bind(stack, room_id, f"github org:{ORG} --register")
    older = await stack.user("older")  # an account made before the tokens
    await asyncio.sleep(CLOCK_SLACK_MS / 1000 + 1)  # well before, beyond the clocks' slack
    tokens = []
    for _ in range(2):
        async with stack.web_client() as http:
            assert (await qualify(http, github, binding, member(github)))["qualified"]
            status, issued = await post(http, "api/register/token", {"binding": binding})
            assert status == 200, issued
            tokens.append(issued)
    used, unused = tokens
    status, account = await register(stack.synapse, used["token"])
    assert status == 200, account
    status, refused = await register(stack.synapse, used["token"])
    assert status == 401 and refused.get("errcode") == "M_UNAUTHORIZED", refused
    # The used token admits only the account made with it, not an older one.
    async with await stack.signed_in(older) as http:
        status, refused = await post(http, "api/register/claim", {"token": used["token"]})
        assert (status, refused["errcode"]) == (403, "TPI_REGISTRATION_NOT_NEW"), refused
    # The second token, past its expiry (one minute), makes nothing.
    await asyncio.sleep(max(0.0, unused["expires_at"] / 1000 - time.time()) + 1)
    status, refused = await register(stack.synapse, unused["token"])
    assert status == 401 and refused.get("errcode") == "M_UNAUTHORIZED", refused
    # Someone holding a token they did not register with gets nothing by claiming it.
    someone = await stack.user("holder")
    async with await stack.signed_in(someone) as http:
        status, refused = await post(http, "api/register/claim", {"token": unused["token"]})
        assert (status, refused["errcode"]) == (409, "TPI_REGISTRATION_NOT_DONE"), refused


async def minted_today(stack: RunningStack) -> int:
    """The plugin's count of tokens minted today (its daily cap's counter)."""
    day = time.strftime("%Y-%m-%d", time.gmtime())
    sql = "SELECT minted FROM {}registration_days WHERE day=$1"
    if stack.database == "sqlite":
        rows = plugin_rows(stack, sql.format("").replace("$1", "?"), day)
        return rows[0][0] if rows else 0
    conn = await asyncpg.connect(POSTGRES)
    try:
        return int(await conn.fetchval(sql.format(f'"mbp_{stack.instance_id}".'), day) or 0)
    finally:
        await conn.close()


async def caps_hold(stack: RunningStack, github: FakeGitHub, operator: MatrixUser) -> None:
    room_id = await stack.room("Busy room")
    _, binding = await bind(stack, room_id, f"github org:{ORG} --register")
    # One external account, ten requests from its session at once: one token.
    async with stack.web_client() as http:
        assert (await qualify(http, github, binding, member(github)))["qualified"]
        answers = await asyncio.gather(
            *(post(http, "api/register/token", {"binding": binding}) for _ in range(10))
        )
    tokens = {a["token"] for status, a in answers if status == 200}
    assert len(tokens) == 1, answers
    assert {a.get("errcode") for status, a in answers if status != 200} <= {
        "TPI_ACCOUNT_HAS_TOKEN"
    }, answers
    # Ten people who qualified, ten requests at once, three left under the daily cap.
    await configure(stack, operator, github, daily_cap=await minted_today(stack) + 3)
    clients = [stack.web_client() for _ in range(10)]
    try:
        for http in clients:
            assert (await qualify(http, github, binding, member(github)))["qualified"]
        before = len(await all_tokens(stack.synapse, operator))
        answers = await asyncio.gather(
            *(post(http, "api/register/token", {"binding": binding}) for http in clients)
        )
    finally:
        for http in clients:
            await http.close()
        await configure(stack, operator, github, daily_cap=1000)
    granted = [a for status, a in answers if status == 200]
    assert len(granted) == 3, answers
    assert {a["errcode"] for status, a in answers if status != 200} == {"TPI_REGISTRATION_CAP"}
    assert len(await all_tokens(stack.synapse, operator)) == before + 3


async def test_the_caps_hold_under_ten_parallel_requests(
    reg_stack: RunningStack, github: FakeGitHub, operator: MatrixUser
) -> None:
    await caps_hold(reg_stack, github, operator)


@pytest.mark.postgres
async def test_the_caps_hold_under_ten_parallel_requests_on_postgres(
    reg_stack: RunningStack,
    github: FakeGitHub,
    operator: MatrixUser,
    tmp_path_factory: pytest.TempPathFactory,
    mbp: Path,
) -> None:
    """The same with the plugin's database in PostgreSQL (another maubot on this Synapse),
    where the requests really run in parallel transactions."""
    async with running_stack(
        tmp_path_factory.mktemp("registration-pg"),
        synapse=reg_stack.synapse,
        database="postgres",
        postgres_url=POSTGRES,
        mbp=mbp,
    ) as stack:
        await configure(stack, operator, github, daily_cap=1000)
        await caps_hold(stack, github, operator)


async def token_for_link(stack: RunningStack, link_token: str) -> tuple[int, dict]:
    async with stack.web_client() as http:
        await post(http, "api/register/session", {})
        return await post(http, "api/register/token", {"link": link_token})


async def test_a_link_with_register_offers_an_account_and_the_link_admits_it(
    reg_stack: RunningStack, github: FakeGitHub, operator: MatrixUser
) -> None:
    stack = reg_stack
    room_id = await stack.room("Link room")
    url = await stack.link(room_id, "--uses 2 --register")
    link_token = url.split("#", 1)[1]
    plain_token = (await stack.link(room_id, "--uses 1")).split("#", 1)[1]
    listed = (await command(stack, room_id, "!invitebot links")).splitlines()
    offering = [line for line in listed if "offers new accounts" in line]
    assert len(offering) == 1 and "2 uses" in offering[0], listed
    async with stack.web_client() as http:
        status, offer = await post(http, "api/register/offer", {"link": plain_token})
        assert status == 200 and offer == {"offered": False}
        status, offer = await post(http, "api/register/offer", {"link": link_token})
        assert status == 200 and offer["offered"] is True
        await post(http, "api/register/session", {})
        status, refused = await post(http, "api/register/token", {"link": plain_token})
        assert (status, refused["errcode"]) == (403, "TPI_REGISTRATION_NOT_OFFERED")
        status, issued = await post(http, "api/register/token", {"link": link_token})
        assert status == 200, issued
    status, account = await register(stack.synapse, issued["token"])
    assert status == 200, account
    newcomer = MatrixUser(
        stack.synapse.base_url, account["user_id"], account["access_token"], account["device_id"]
    )
    try:
        async with await signed_in_session(stack.web_url, newcomer) as http:
            # The token without its link admits nothing.
            status, refused = await post(http, "api/register/claim", {"token": issued["token"]})
            assert (status, refused["errcode"]) == (404, "TPI_LINK_UNKNOWN"), refused
            body = {"token": issued["token"], "link": link_token}
            status, claimed = await post(http, "api/register/claim", body)
            assert status == 202, claimed
            assert [r["room_id"] for r in claimed["rooms"]] == [room_id]
            assert (await invited(http, room_id))["outcome"] == "invited"
    finally:
        await newcomer.close()
    # The claim spent one use and freed the token's: one more token, then the link's last
    # use is set aside for it and nobody else gets one meanwhile.
    status, second = await token_for_link(stack, link_token)
    assert status == 200, second
    status, refused = await token_for_link(stack, link_token)
    assert (status, refused["errcode"]) == (409, "TPI_LINK_FULL"), refused


async def test_unused_tokens_are_deleted_at_synapse_when_they_expire(
    reg_stack: RunningStack, operator: MatrixUser, storage: Storage
) -> None:
    """The purge the plugin runs every 10 minutes, run here on both engines against this
    module's Synapse (an expiry in the plugin's database moved into the past)."""
    synapse = reg_stack.synapse
    settings = RegistrationSettings(
        server_name=synapse.server_name,
        admin_api_url=synapse.base_url,
        admin_token=operator.access_token,
    )
    minter = SynapseAdminMinter(settings.admin_api_url, settings.admin_token)
    service = RegistrationService(
        settings, storage, None, None, None, None, 1, minter, logging.getLogger("test.reg")
    )  # type: ignore[arg-type]  # the purge needs the storage and the minter only
    store = storage.registrations
    now = now_ms()
    rows = {}
    for name in ("used", "unused", "never minted"):
        rows[name] = await store.reserve(
            Reservation(
                binding_id=None,
                link_id=None,
                accounts=(),
                session_hash=secrets.token_hex(32),
                now=now,
                expires_at=now + 60_000,
                day="purge-test",
                daily_cap=10,
            )
        )
    tokens = {}
    for name in ("used", "unused"):
        tokens[name] = (await minter.mint(1, now + 60_000)).token
        await store.minted(rows[name], tokens[name])
    status, _ = await register(synapse, tokens["used"])
    assert status == 200
    await storage.db.execute("UPDATE registration_tokens SET expires_at = 1")
    try:
        assert await service.purge_expired() == 1
    finally:
        await service.close()
    assert await admin_token_info(synapse, operator, tokens["unused"]) is None
    assert await admin_token_info(synapse, operator, tokens["used"]) is not None
    assert await store.by_token(tokens["unused"]) is None
    kept = await store.by_token(tokens["used"])
    assert kept is not None and kept.used_at is not None
    remaining = await storage.db.fetch("SELECT id FROM registration_tokens")
    assert [r["id"] for r in remaining] == [rows["used"]]
    deleted = await storage.db.fetch(
        "SELECT target FROM audit_log WHERE action='registration_token_deleted'"
    )
    assert [r["target"] for r in deleted] == [f"registration token {rows['unused']}"]


async def test_without_registration_set_up_nothing_is_offered(
    reg_stack: RunningStack, github: FakeGitHub, operator: MatrixUser
) -> None:
    stack = reg_stack
    room_id = await stack.room("Plain room")
    _, binding = await bind(stack, room_id, f"github org:{ORG} --register")
    section = github.config_section(
        client_id=f"app-{stack.instance_id}",
        callback_url=f"{stack.web_url}api/oauth/callback",
    )
    await stack.configure(providers={"github": section})  # no registration: section
    await asyncio.sleep(1)
    try:
        reply = await command(stack, room_id, "!invitebot link --register")
        assert "--register: this bot does not offer new accounts" in reply, reply
        async with stack.web_client() as http:
            status, offer = await post(http, "api/register/offer", {"binding": binding})
            assert status == 200 and offer == {"offered": False}
            status, refused = await post(http, "api/register/session", {})
            assert (status, refused["errcode"]) == (404, "TPI_REGISTRATION_OFF")
    finally:
        await configure(stack, operator, github, daily_cap=1000)


async def test_a_refused_admin_token_mints_nothing_and_counts_nothing(
    reg_stack: RunningStack, github: FakeGitHub, operator: MatrixUser
) -> None:
    stack = reg_stack
    room_id = await stack.room("Broken minting room")
    _, binding = await bind(stack, room_id, f"github org:{ORG} --register")
    wrong = f"syt_wrong_{secrets.token_hex(8)}"
    day = time.strftime("%Y-%m-%d", time.gmtime())

    def minted_today() -> int:
        rows = plugin_rows(stack, "SELECT minted FROM registration_days WHERE day=?", day)
        return rows[0][0] if rows else 0

    before = minted_today()
    async with stack.web_client() as http:
        assert (await qualify(http, github, binding, member(github)))["qualified"]
        await configure(stack, operator, github, daily_cap=1000, admin_token=wrong)
        try:
            status, refused = await post(http, "api/register/token", {"binding": binding})
            assert (status, refused["errcode"]) == (502, "TPI_REGISTRATION_UNAVAILABLE")
            assert wrong not in refused["error"]
            assert minted_today() == before  # given back
            log = stack.maubot.log_text()
            assert "check registration.admin_token" in log and wrong not in log
        finally:
            await configure(stack, operator, github, daily_cap=1000)
        # Nothing was held against the person: with the right admin token, a token.
        status, issued = await post(http, "api/register/token", {"binding": binding})
        assert status == 200, issued
