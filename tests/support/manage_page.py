"""The admin panel (…/manage) as a room admin uses it in the browser tests: sign in, pick a
room, and the room's sections (links, bindings, people, invites, audit log)."""

from __future__ import annotations

from playwright.async_api import Locator, expect
from support.browser_pages import STATES, InvitePage


class ManagePage(InvitePage):
    states = (*STATES, "state-rooms", "state-room")
    submit_label = "Sign in and manage"

    async def open_panel(self, web_url: str, room_id: str = "") -> None:
        await self.page.goto(f"{web_url}manage" + (f"#{room_id}" if room_id else ""))

    async def sign_in(self, user_id: str, password: str) -> None:
        """Matrix ID and password; ends once the panel shows the rooms or a room."""
        await self.enter_matrix_id(user_id)
        await self.sign_in_with_password(password)
        await expect(
            self.page.locator("#state-rooms, #state-room").locator("visible=true")
        ).to_have_count(1)

    async def rooms(self) -> Locator:
        return await self.wait_for("state-rooms")

    async def open_room(self, name: str) -> Locator:
        """From the list of rooms, the room called `name`, once its details are in."""
        await self.wait_for("state-rooms")
        await self.page.locator("#room-list").get_by_role("link", name=name, exact=True).click()
        return await self.room_shown(name)

    async def room_shown(self, name: str) -> Locator:
        room = await self.wait_for("state-room")
        await expect(room.locator("#room-title")).to_have_text(name)
        await expect(room.locator("#room-body")).to_be_visible()
        return room

    def section(self, title_id: str) -> Locator:
        return self.page.locator(f"section[aria-labelledby='{title_id}']")

    async def create_link(self, *, name: str = "", uses: str = "", expires: str = "") -> str:
        """Fill the new-link form; returns the address shown once."""
        await self.page.get_by_text("Create an invite link").click()
        if name:
            await self.page.locator("#link-name").fill(name)
        if uses:
            await self.page.locator("#link-uses").fill(uses)
        if expires:
            await self.page.locator("#link-expires").fill(expires)
        await self.page.get_by_role("button", name="Create the link").click()
        url = self.page.locator("#link-new-url")
        await expect(url).to_be_visible()
        return await url.inner_text()

    async def reload_room(self, shot: str = "") -> None:
        """The room again, as the admin sees it after a reload ("Manage as @you?");
        `shot` names a screenshot of that question."""
        await self.page.reload()
        await self.wait_for("state-session")
        if shot:
            await self.shot(shot)
        await self.page.get_by_role("button", name="Manage", exact=True).click()
        await self.wait_for("state-room")
        await expect(self.page.locator("#room-body")).to_be_visible()
