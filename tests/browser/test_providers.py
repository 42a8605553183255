"""Rooms open to people a provider vouches for, in Chromium, end to end: a room admin binds a
room with a real command, a person opens the binding's link, proves their Matrix ID on the
page (or through the bot's direct chat), signs in at a local GitHub, Patreon or OpenID
provider by pressing its consent page's button, and gets a real invite from Synapse."""

from __future__ import annotations

import re
import secrets
from urllib.parse import urlsplit

from playwright.async_api import Page, expect
import pytest
from support.browser_pages import JoinPage
from support.invite_site import IDP_NAME, PASSWORD, Site, bind

pytestmark = pytest.mark.browser

SIGN_IN_LINK = re.compile(r"https?://\S+/join#([A-Za-z0-9_-]{16})\.([A-Za-z0-9_-]{43})")


def fragment(link: str) -> str:
    return link.split("#", 1)[1]


async def invites_seen_by_the_page(page: Page) -> list[dict]:
    """What `api/invites` tells this browser's session."""
    return (await page.evaluate("fetch('api/invites').then((r) => r.json())"))["invites"]


async def test_a_github_team_member_is_invited(
    site: Site, providers, browser_context, screenshots
):
    github = providers.github
    room_id = await site.room("Core team", topic="Where the maintainers meet.")
    link = await bind(site, room_id, "github team:matrix-org/core")
    user = await site.user()
    account = github.add_account(f"alice{secrets.token_hex(2)}").join_team("matrix-org", "core")
    github.sign_in_as(account)
    page = JoinPage(await browser_context(), screenshots)

    await page.open(link)
    await page.wait_for("state-mxid")
    await expect(page.page.locator("h1")).to_have_text("Join Core team")
    await expect(page.page.locator("#link-requirement")).to_have_text(
        "Open to members of team core of matrix-org on GitHub."
    )
    await expect(page.page.locator("#link-plan")).to_contain_text(
        "sign in to your Matrix account, then at GitHub"
    )
    assert await page.focused_id() == "mxid"
    await page.shot("binding-page")
    await page.enter_matrix_id(user.user_id)
    await page.sign_in_with_password(PASSWORD)

    step = await page.provider_step("GitHub", "Sign in at GitHub")
    await expect(step).to_contain_text("Admits members of team core of matrix-org on GitHub.")
    await expect(step.locator(".badge")).to_have_text("Next")
    await expect(page.page.locator("#providers-user")).to_have_text(user.user_id)
    assert await page.focused_id() == "provider-action"
    await page.shot("provider-step")
    await page.at_consent("GitHub")
    await expect(page.page.get_by_text(account.login)).to_be_visible()
    await page.shot("github-consent")
    await page.page.get_by_role("button", name="Authorize").click()

    done = await page.wait_for("state-done")
    await expect(done.locator("#done-title")).to_have_text("You are invited")
    open_link = done.get_by_role("link", name="Open with matrix.to")
    assert room_id in await open_link.get_attribute("href")
    assert urlsplit(page.page.url).fragment == fragment(link)  # back on the binding's page
    await page.shot("invited")
    await user.wait_for_invite(room_id)

    # A reload shows the result again; the session's sign-ins still hold.
    await page.page.reload()
    await page.wait_for("state-done")

    # Another day, another browser: admitted before, they sign in at GitHub again, which
    # checks them afresh and queues the invite again (the queue sees it is there already).
    page = JoinPage(await browser_context(), screenshots)
    await page.open(link)
    await page.enter_matrix_id(user.user_id)
    await page.sign_in_with_password(PASSWORD)
    await page.sign_in_at("GitHub")
    done = await page.wait_for("state-done")
    await expect(done.locator("#done-rooms")).to_contain_text("You already had an invite.")
    await page.shot("admitted-again")


async def test_a_patreon_patron_of_the_tier_is_invited(
    site: Site, providers, browser_context, screenshots
):
    patreon = providers.patreon
    room_id = await site.room("Gold lounge")
    link = await bind(site, room_id, "patreon tier:Gold")
    user = await site.user()
    patron = patreon.add_account("Pat Patron")
    patreon.pledge(patron, "Platinum")  # above Gold counts
    patreon.sign_in_as(patron)
    page = JoinPage(await browser_context(), screenshots)
    await page.open(link)
    await expect(page.page.locator("#link-requirement")).to_contain_text("at tier Gold or above")
    await page.enter_matrix_id(user.user_id)
    await page.sign_in_with_password(PASSWORD)
    await page.provider_step("Patreon", "Sign in at Patreon")
    await page.at_consent("Patreon")
    await page.shot("patreon-consent")
    await page.page.get_by_role("button", name="Authorize").click()
    done = await page.wait_for("state-done")
    await expect(done.locator("#done-title")).to_have_text("You are invited")
    await page.shot("invited")
    await user.wait_for_invite(room_id)


async def test_a_binding_of_two_providers_walks_through_both(
    site: Site, providers, browser_context, screenshots
):
    github, patreon = providers.github, providers.patreon
    room_id = await site.room("Sponsors and maintainers")
    link = await bind(site, room_id, "github team:matrix-org/core and patreon tier:Gold")
    user = await site.user()
    github.sign_in_as(
        github.add_account(f"both{secrets.token_hex(2)}").join_team("matrix-org", "core")
    )
    patron = patreon.add_account("Both Ways")
    patreon.pledge(patron, "Gold")
    patreon.sign_in_as(patron)
    page = JoinPage(await browser_context(), screenshots)
    await page.open(link)
    await expect(page.page.locator("#link-requirement")).to_contain_text(
        "members of team core of matrix-org on GitHub, and patrons of"
    )
    await expect(page.page.locator("#link-plan")).to_contain_text("then at GitHub and Patreon")
    await page.shot("binding-page")
    await page.enter_matrix_id(user.user_id)
    await page.sign_in_with_password(PASSWORD)
    await page.provider_step("GitHub", "Sign in at GitHub")
    await expect(page.page.locator(".provider-step")).to_have_count(2)
    await page.sign_in_at("GitHub")

    github_step = await page.provider_step("GitHub", "Next: Patreon")
    await expect(github_step.locator(".badge")).to_have_text("Done")
    await expect(github_step).to_contain_text("Signed in as both")
    patreon_step = page.page.locator(".provider-step", has_text="Patreon")
    await expect(patreon_step.locator(".badge")).to_have_text("Next")
    assert await page.focused_id() == "provider-action"
    await page.shot("github-done-patreon-next")
    assert await invites_seen_by_the_page(page.page) == []  # one of two proves nothing yet
    await page.sign_in_at("Patreon")

    done = await page.wait_for("state-done")
    await expect(done.locator("#done-title")).to_have_text("You are invited")
    await page.shot("invited")
    await user.wait_for_invite(room_id)


async def test_the_second_providers_refusal_leaves_no_grant(
    site: Site, providers, browser_context, screenshots
):
    github, patreon = providers.github, providers.patreon
    room_id = await site.room("Gold maintainers")
    link = await bind(site, room_id, "github org:matrix-org and patreon tier:Gold")
    user = await site.user()
    github.sign_in_as(github.add_account(f"half{secrets.token_hex(2)}").join_org("matrix-org"))
    patron = patreon.add_account("Bronze Patron")
    pledge = patreon.pledge(patron, "Bronze")
    patreon.sign_in_as(patron)
    page = JoinPage(await browser_context(), screenshots)
    await page.open(link)
    await page.enter_matrix_id(user.user_id)
    await page.sign_in_with_password(PASSWORD)
    await page.sign_in_at("GitHub")
    await page.sign_in_at("Patreon")

    step = await page.provider_step("Patreon", "Patreon says you do not qualify")
    await expect(step.locator(".badge")).to_have_text("Not admitted")
    await expect(step.locator(".provider-status")).to_have_text(
        "Your tier (Bronze) is below Gold."
    )
    await expect(page.page.locator("#provider-action")).to_have_text("Sign in at Patreon again")
    await expect(
        page.page.locator(".provider-step", has_text="GitHub").locator(".badge")
    ).to_have_text("Done")
    await page.shot("patreon-refuses")
    assert await invites_seen_by_the_page(page.page) == []

    # They raise their pledge and check again: now they are in.
    gold = patreon.campaign.tier("Gold")
    pledge.tiers, pledge.amount_cents = [gold], gold.amount_cents
    await page.sign_in_at("Patreon", "Sign in at Patreon again")
    await page.wait_for("state-done")
    await page.shot("invited-after-raising-the-pledge")
    await user.wait_for_invite(room_id)


async def test_the_link_from_the_bots_direct_chat_needs_no_matrix_sign_in(
    site: Site, providers, browser_context, screenshots
):
    github = providers.github
    room_id = await site.room("By direct message")
    link = await bind(site, room_id, "github org:matrix-org")
    user = await site.user()
    github.sign_in_as(github.add_account(f"dm{secrets.token_hex(2)}").join_org("matrix-org"))

    # In their Matrix app: a direct chat with the bot, and the binding's link sent there.
    dm = await user.create_dm(site.bot.user_id)
    await user.wait_for_membership(dm, site.bot.user_id, "join", timeout=60)
    await user.send_text(dm, f"!invitebot claim {link}")
    reply = await user.wait_for_message(
        dm, lambda c: "/join#" in c.get("body", ""), sender=site.bot.user_id, timeout=60
    )
    match = SIGN_IN_LINK.search(reply["body"])
    assert match and match.group(1) == fragment(link), reply["body"]
    sign_in_link = match.group(0)

    page = JoinPage(await browser_context(), screenshots)
    sent: list[str] = []
    page.page.on("request", lambda request: sent.append(request.url))
    await page.open(sign_in_link)
    step = await page.provider_step("GitHub", "Sign in at GitHub")
    await expect(page.page.locator("#providers-user")).to_have_text(user.user_id)
    await expect(step).to_contain_text("Admits members of the GitHub organisation matrix-org.")
    # The ticket left the address bar (and the history) before anything was sent.
    assert urlsplit(page.page.url).fragment == fragment(link)
    await expect(page.page.locator("#bot-alternative")).to_be_hidden()
    assert not any("/_matrix/client/" in url for url in sent)  # no Matrix sign-in at all
    await page.shot("signed-in-by-the-bot")
    await page.sign_in_at("GitHub")
    await page.wait_for("state-done")
    await page.shot("invited")
    await user.wait_for_invite(room_id)

    # The sign-in link works once: opened again, it says so and offers the Matrix sign-in.
    again = JoinPage(await browser_context(), screenshots)
    await again.open(sign_in_link)
    title, text = await again.problem()
    assert title == "This sign-in link no longer works"
    assert "already used or has expired" in text
    await again.shot("sign-in-link-used")
    await again.page.get_by_role("button", name="Sign in with your Matrix account").click()
    await again.wait_for("state-mxid")


async def test_an_openid_provider_group(site: Site, providers, browser_context, screenshots):
    assert site.oidc is not None
    room_id = await site.room("Staff room")
    link = await bind(site, room_id, f"{providers.oidc_id} groups:staff")
    user = await site.user()
    password = secrets.token_urlsafe(12)
    staff = site.oidc.add_account(f"staff-{secrets.token_hex(3)}", password, groups=["staff"])
    page = JoinPage(await browser_context(), screenshots)
    await page.open(link)
    await expect(page.page.locator("#link-requirement")).to_contain_text("staff")
    await page.shot("binding-page")
    await page.enter_matrix_id(user.user_id)
    await page.sign_in_with_password(PASSWORD)
    await page.provider_step("Staff SSO", "Sign in at Staff SSO")
    await page.page.locator("#provider-action").click()

    # At the OpenID provider: its own sign-in form (it trusts its clients: no consent).
    await page.page.wait_for_url(f"{site.oidc.issuer}/**")
    await page.page.get_by_label("Username").fill(staff.preferred_username)
    await page.page.get_by_label("Password").fill(password)
    await page.shot("provider-sign-in")
    await page.page.get_by_role("button", name="Sign in").click()
    done = await page.wait_for("state-done")
    await expect(done.locator("#done-title")).to_have_text("You are invited")
    await page.shot("invited")
    await user.wait_for_invite(room_id)


async def test_single_sign_on_on_a_binding_page(
    site: Site, providers, browser_context, screenshots
):
    # The Matrix sign-in module is the invite page's, SSO round trip included: back from
    # the homeserver, the binding's page picks up at the providers' step.
    github = providers.github
    room_id = await site.room("SSO and GitHub")
    link = await bind(site, room_id, "github org:matrix-org")
    user, provider_password = await site.sso_user()
    github.sign_in_as(github.add_account(f"sso{secrets.token_hex(2)}").join_org("matrix-org"))
    page = JoinPage(await browser_context(), screenshots)
    browser = page.page
    await page.open(link)
    await page.enter_matrix_id(user.user_id)
    await page.wait_for("state-signin")
    await browser.get_by_role("button", name=f"Continue with {IDP_NAME}").click()
    await browser.wait_for_url(f"{site.oidc.issuer}/**")
    await browser.get_by_label("Username").fill(user.localpart)
    await browser.get_by_label("Password").fill(provider_password)
    await browser.get_by_role("button", name="Sign in").click()
    await browser.get_by_role("link", name="Continue").click()  # Synapse asks first

    await page.provider_step("GitHub", "Sign in at GitHub")
    await expect(browser.locator("#providers-user")).to_have_text(user.user_id)
    address = urlsplit(browser.url)
    assert "loginToken" not in address.query and address.fragment == fragment(link)
    await page.shot("back-from-sso")
    await page.sign_in_at("GitHub")
    await page.wait_for("state-done")
    await user.wait_for_invite(room_id)
