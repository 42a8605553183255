"""The admin panel (…/manage) end to end in Chromium: a room admin signs in with the pages'
Matrix sign-in step, sees the rooms where the bot is and they may invite, and manages one:
links and bindings made in the panel admit people, who are listed with how they came; a
non-admin sees no room and cannot act by crafting requests; an admin demoted mid-session is
refused with the reason, where they acted."""

from __future__ import annotations

import secrets
from urllib.parse import quote, unquote, urlsplit

from playwright.async_api import Page, expect
import pytest
from support.browser_pages import InvitePage, JoinPage
from support.invite_site import IDP_NAME, PASSWORD, Site
from support.manage_page import ManagePage

pytestmark = pytest.mark.browser


async def post(page: Page, name: str, body: dict) -> tuple[int, dict]:
    """A request crafted in the page's own session: `api/manage/<name>`."""
    return tuple(
        await page.evaluate(
            """async ([name, body]) => {
              const r = await fetch(`api/manage/${name}`, {method: "POST",
                headers: {"Content-Type": "application/json"}, body: JSON.stringify(body)});
              return [r.status, await r.json()];
            }""",
            [name, body],
        )
    )


async def signed_in_panel(
    site: Site, browser_context, screenshots, user_id: str, room_id: str = "", **context: object
) -> ManagePage:
    page = ManagePage(await browser_context(**context), screenshots)
    await page.open_panel(site.web_url, room_id)
    await page.enter_matrix_id(user_id)
    await page.sign_in_with_password(PASSWORD)
    return page


async def test_an_admin_signs_in_and_sees_their_rooms(site: Site, browser_context, screenshots):
    name = f"Panel lobby {secrets.token_hex(2)}"
    room_id = await site.room(name, topic="Where the panel is tried.")
    space_name = f"Panel space {secrets.token_hex(2)}"
    space_id = await site.admin.create_room(
        space_name,
        invite=[site.bot.user_id],
        creation_content={"type": "m.space"},
        power_level_content_override={"invite": 50, "users": {site.bot.user_id: 50}},
    )
    await site.admin.wait_for_membership(space_id, site.bot.user_id, "join", timeout=60)
    elsewhere = await site.user("elsewhere")
    not_theirs = await elsewhere.create_room("Somebody else's room")
    page = ManagePage(await browser_context(), screenshots)
    await page.open_panel(site.web_url)
    await page.wait_for("state-mxid")
    assert await page.focused_id() == "mxid"
    await expect(page.page.locator("h1")).to_have_text("Manage your rooms")
    await page.shot("sign-in")
    await page.enter_matrix_id(site.admin.user_id)
    await page.wait_for("state-signin")
    await expect(page.page.get_by_role("button", name="Sign in and manage")).to_be_visible()
    await page.shot("password")
    await page.sign_in_with_password(PASSWORD)
    rooms = await page.rooms()
    assert await page.page.evaluate("document.activeElement.id") == "rooms-title"
    await expect(rooms.locator("#room-list")).to_contain_text(name)
    await expect(rooms.locator("#room-list")).to_contain_text("Where the panel is tried.")
    await expect(rooms.locator("#room-list")).not_to_contain_text("Somebody else's room")
    await expect(rooms.locator(".panel-user").first).to_have_text(site.admin.user_id)
    space = rooms.locator(".panel-room", has_text=space_name)
    await expect(space.locator(".badge")).to_have_text("Space")
    await page.shot("rooms")
    await page.open_room(space_name)
    await expect(page.page.locator("#room-summary")).to_contain_text("A space: what you set")
    await page.page.get_by_role("link", name="All your rooms").click()
    room = await page.open_room(name)
    assert page.page.url.endswith(f"manage#{room_id}")
    for title in ("Invite links", "Bindings", "People let in", "Invites", "Audit log"):
        await expect(room.get_by_role("heading", name=title, exact=True)).to_be_visible()
    await expect(room.locator("#links-list")).to_contain_text("No invite links yet.")
    await page.shot("room")
    # The address names the room: a reload there asks "Manage as @you?" and comes back.
    await page.reload_room(shot="manage-as")
    await expect(page.page.locator("#room-title")).to_have_text(name)
    # Back to the list, and no name of a room they do not manage anywhere on the way.
    await page.page.get_by_role("link", name="All your rooms").click()
    await page.rooms()
    assert not_theirs not in await page.page.content()


async def test_a_link_made_in_the_panel_admits_a_person_listed_with_how_they_came(
    site: Site, browser_context, screenshots
):
    name = f"Panel links {secrets.token_hex(2)}"
    room_id = await site.room(name)
    page = await signed_in_panel(site, browser_context, screenshots, site.admin.user_id, room_id)
    await page.room_shown(name)
    url = await page.create_link(name="Newsletter", uses="2", expires="7d")
    assert "/invite#" in url
    # Shown once: the focus is on its Copy button, and the list shows the new link.
    assert await page.page.evaluate("document.activeElement.textContent") == "Copy"
    item = page.section("links-title").locator(".panel-item", has_text="Newsletter")
    await expect(item).to_contain_text("2 of 2 uses left.")
    await expect(item).to_contain_text("Expires on")
    await expect(item).to_contain_text("Nobody has joined through it yet.")
    await page.shot("link-created")

    person = await site.user("linked")
    visitor = InvitePage(await browser_context(), screenshots)
    await visitor.open(url)
    await visitor.enter_matrix_id(person.user_id)
    await visitor.sign_in_with_password(PASSWORD)
    await visitor.wait_for("state-done")
    await person.wait_for_invite(room_id)

    await page.reload_room()
    item = page.section("links-title").locator(".panel-item", has_text="Newsletter")
    await expect(item).to_contain_text("1 of 2 uses left.")
    await expect(item.locator(".joined")).to_contain_text(person.user_id)
    people = page.section("people-title").locator("li", has_text=person.user_id)
    await expect(people).to_contain_text("through the invite link Newsletter")
    await expect(page.section("audit-title")).to_contain_text("link created")
    await page.shot("person-listed")

    # Revoke, after a confirmation; the focus goes back to the section's heading.
    await item.get_by_role("button", name="Revoke").click()
    await expect(item).to_contain_text("Revoke Newsletter?")
    await page.shot("revoke-confirm")
    await item.get_by_role("button", name="Revoke it").click()
    revoked = page.section("links-title").locator(".panel-item", has_text="Newsletter")
    await expect(revoked.locator(".badge")).to_have_text("Revoked")
    await expect(page.page.locator("#links-title")).to_be_focused()
    await page.shot("revoked")
    late = InvitePage(await browser_context(), screenshots)
    await late.open(url)
    await late.wait_for("state-link-problem")


async def test_a_non_admin_sees_no_room_and_crafted_requests_are_refused(
    site: Site, browser_context, screenshots
):
    room_id = await site.room(f"Not for visitors {secrets.token_hex(2)}")
    person = await site.user("nonadmin")
    await site.admin.invite(room_id, person.user_id)
    await person.join(room_id)  # a member, but without the power to invite
    page = await signed_in_panel(site, browser_context, screenshots, person.user_id)
    rooms = await page.rooms()
    await expect(rooms.locator("#rooms-empty")).to_be_visible()
    await expect(rooms.locator("#rooms-empty")).to_contain_text("You manage no room here yet.")
    await page.shot("no-rooms")
    # The room's own address: refused in words, and the same as for a room that is not.
    await page.open_panel(site.web_url, room_id)
    refusal = page.page.locator("#room-refusal-text")
    await expect(refusal).to_be_visible()
    said = await refusal.inner_text()
    assert "cannot manage that room" in said
    await page.shot("refused-room")
    made_up = f"!{secrets.token_urlsafe(18)}:{site.admin.server_name}"
    for body in ({"room_id": room_id}, {"room_id": made_up}):
        status, answer = await post(page.page, "room", body)
        assert status == 403, answer
        assert answer["error"] == said
    status, answer = await post(page.page, "links/create", {"room_id": room_id, "uses": 5})
    assert status == 403 and answer["error"] == said
    assert "links" not in answer


async def test_an_admin_demoted_mid_session_is_refused_with_the_reason(
    site: Site, browser_context, screenshots
):
    name = f"Demotions {secrets.token_hex(2)}"
    room_id = await site.room(name)
    moderator = await site.user("moderator")
    await site.admin.invite(room_id, moderator.user_id)
    await moderator.join(room_id)
    await site.admin.set_power_level(room_id, moderator.user_id, 50)
    page = await signed_in_panel(site, browser_context, screenshots, moderator.user_id)
    await page.open_room(name)
    await page.page.get_by_text("Create an invite link").click()
    await page.page.locator("#link-name").fill("Too late")
    await site.admin.set_power_level(room_id, moderator.user_id, 0)
    await page.page.get_by_role("button", name="Create the link").click()
    error = page.page.locator("#link-form-error")
    await expect(error).to_be_visible()
    await expect(error).to_have_attribute("role", "alert")
    assert "invite" in (await error.inner_text())
    await expect(page.page.locator("#link-new-url")).to_have_count(0)
    await page.shot("demoted-refused")
    # Back to the list, which is read again: the room is gone from it.
    await page.page.get_by_role("link", name="All your rooms").click()
    await page.rooms()
    await expect(page.page.locator("#rooms-empty")).to_be_visible()
    await expect(page.page.locator("#room-list")).not_to_contain_text(name)


async def test_a_binding_made_in_the_panel_admits_a_person_listed_with_how_they_came(
    site: Site, providers, browser_context, screenshots
):
    github = providers.github
    name = f"Panel bindings {secrets.token_hex(2)}"
    room_id = await site.room(name)
    page = await signed_in_panel(site, browser_context, screenshots, site.admin.user_id, room_id)
    await page.room_shown(name)
    await page.page.get_by_text("Create a binding").click()
    rule = page.page.locator("fieldset.rule").first
    await rule.get_by_label("Provider").select_option(label="GitHub")
    await rule.get_by_label("Kind of rule").select_option("team")
    await rule.get_by_label("Organisation").fill("matrix-org")
    # A rule the server refuses is said where it is typed, in the words `bind` uses.
    await rule.get_by_label("Team (as in its URL)").fill("core team")
    await expect(rule.locator(".field-error")).to_be_visible()
    await page.shot("rule-refused")
    await rule.get_by_label("Team (as in its URL)").fill("core")
    await expect(rule.locator(".rule-words")).to_have_text(
        "Admits members of team core of matrix-org on GitHub."
    )
    await expect(rule.locator(".field-error")).to_be_hidden()
    await page.shot("rule-in-words")
    await page.page.get_by_role("button", name="Create the binding").click()
    url = page.page.locator("#binding-new-url")
    await expect(url).to_be_visible()
    link = await url.inner_text()
    assert "/join#" in link
    item = page.section("bindings-title").locator(".panel-item").first
    await expect(item).to_contain_text("Open to members of team core of matrix-org on GitHub.")
    await page.shot("binding-created")

    person = await site.user("bound")
    account = github.add_account(f"panel{secrets.token_hex(2)}").join_team("matrix-org", "core")
    github.sign_in_as(account)
    visitor = JoinPage(await browser_context(), screenshots)
    await visitor.open(link)
    await visitor.enter_matrix_id(person.user_id)
    await visitor.sign_in_with_password(PASSWORD)
    await visitor.sign_in_at("GitHub")
    await visitor.wait_for("state-done")
    await person.wait_for_invite(room_id)

    await page.reload_room()
    people = page.section("people-title").locator("li", has_text=person.user_id)
    await expect(people).to_contain_text(
        "through the binding for members of team core of matrix-org on GitHub"
    )
    await page.shot("person-listed")

    # Policy and grace, then a re-check with its outcome, then unbind.
    item = page.section("bindings-title").locator(".panel-item").first
    await item.get_by_label("When someone stops qualifying").select_option("dry-run")
    await item.get_by_label("Grace period").fill("3d")
    await item.get_by_role("button", name="Save").click()
    await expect(item.get_by_label("When someone stops qualifying")).to_have_value("dry-run")
    await expect(item.get_by_label("Grace period")).to_have_value("3d")
    await item.get_by_role("button", name="Re-check now").click()
    await expect(item.locator(".recheck-outcome")).to_contain_text("Re-check now:")
    await page.shot("rechecked")
    await item.get_by_role("button", name="Unbind").click()
    await item.get_by_role("button", name="Unbind it").click()
    await expect(page.section("bindings-title")).to_contain_text("No bindings yet.")
    await page.shot("unbound")


async def test_a_failed_invite_shows_its_reason_and_is_retried(
    site: Site, browser_context, screenshots
):
    name = f"Panel retries {secrets.token_hex(2)}"
    room_id = await site.room(name)
    link = await site.link(room_id)
    person = await site.user("banned")
    await site.admin.ban(room_id, person.user_id)
    visitor = InvitePage(await browser_context(), screenshots)
    await visitor.open(link)
    await visitor.enter_matrix_id(person.user_id)
    await visitor.sign_in_with_password(PASSWORD)
    await visitor.wait_for("state-problem")  # "The invite did not go through"

    page = await signed_in_panel(site, browser_context, screenshots, site.admin.user_id, room_id)
    await page.room_shown(name)
    failed = page.page.locator("#invites-failed li", has_text=person.user_id)
    await expect(failed).to_contain_text("is banned from the room; unban them first.")
    await page.shot("invite-failed")
    # Unbanned in their Matrix client, the admin retries from the panel.
    await site.admin.request(
        "POST", f"/_matrix/client/v3/rooms/{quote(room_id)}/unban", {"user_id": person.user_id}
    )
    await failed.get_by_role("button", name="Retry").click()
    await expect(page.page.locator("#invites-title")).to_be_focused()
    await person.wait_for_invite(room_id)
    await expect(page.page.locator("#invites-failed")).not_to_contain_text(person.user_id)
    await expect(page.section("audit-title")).to_contain_text("invite retried")
    await page.shot("invite-retried")


async def test_an_admin_signs_in_through_single_sign_on_back_to_the_room(
    site: Site, browser_context, screenshots
):
    name = f"Panel by SSO {secrets.token_hex(2)}"
    room_id = await site.room(name)
    user, provider_password = await site.sso_user("panelsso")
    await site.admin.invite(room_id, user.user_id)
    await user.join(room_id)
    await site.admin.set_power_level(room_id, user.user_id, 50)
    page = ManagePage(await browser_context(), screenshots)
    browser = page.page
    await page.open_panel(site.web_url, room_id)
    await page.enter_matrix_id(user.user_id)
    await page.wait_for("state-signin")
    await browser.get_by_role("button", name=f"Continue with {IDP_NAME}").click()
    await browser.wait_for_url(f"{site.oidc.issuer}/**")
    await browser.get_by_label("Username").fill(user.localpart)
    await browser.get_by_label("Password").fill(provider_password)
    await browser.get_by_role("button", name="Sign in").click()
    await browser.get_by_role("link", name="Continue").click()
    # Back in the panel, on the room the address named; the login token has left it.
    await page.room_shown(name)
    address = urlsplit(browser.url)
    assert "loginToken" not in address.query
    assert unquote(address.fragment) == room_id
    await page.shot("room-after-sso")


async def test_names_and_rules_are_shown_as_text(
    site: Site, providers, browser_context, screenshots
):
    hostile = '<img src=x onerror="document.title=1">'
    room_id = await site.room(f"Room {hostile}", topic=f"Topic {hostile}")
    page = await signed_in_panel(site, browser_context, screenshots, site.admin.user_id, room_id)
    await page.room_shown(f"Room {hostile}")
    await page.create_link(name=f"Link {hostile}")
    await expect(page.page.locator("#links-list")).to_contain_text(f"Link {hostile}")
    await page.page.get_by_text("Create a binding").click()
    await page.page.locator("fieldset.rule").first.get_by_label("Kind of rule").select_option("")
    await page.page.locator("fieldset.rule").first.get_by_label("The rule").fill(hostile)
    await expect(page.page.locator("fieldset.rule .field-error")).to_be_visible()
    await page.page.get_by_role("link", name="All your rooms").click()
    await expect(page.page.locator("#room-list")).to_contain_text(f"Room {hostile}")
    # Nothing of it became markup: no image, and the page's title is its own.
    assert await page.page.locator("main img").count() == 0
    assert await page.page.title() == "Manage your rooms"
    await page.shot("names-as-text")
