"""`./dev demo`: the plugin for real on this machine, with a link to try in a browser.

Starts the stack (devtools/stack.py: Synapse on loopback and a full maubot server running
the built .mbp on SQLite, an admin and the bot), creates a demo account and a room the bot
manages, and asks the bot for an invite link exactly as a room admin would
(`!invitebot link`). Prints the link and the account to sign in with, then runs until
Ctrl-C. State lives in .demo/ and is started afresh on every run.
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path
import shutil
import signal

from devtools.stack import running_stack

ROOT = Path(__file__).resolve().parent.parent


async def run(state_dir: Path, password: str) -> None:
    # A fresh start every time: no stale ports or tokens.
    shutil.rmtree(state_dir, ignore_errors=True)  # before anything runs
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    print("Starting Synapse and maubot on 127.0.0.1 ...", flush=True)
    async with running_stack(
        state_dir,
        password=password,
        admin_name="demo-admin",
        bot_name="invitebot",
        instance_id="invitebot",
        rate_limits=True,  # the plugin as operators run it
    ) as stack:
        try:
            user = await stack.synapse.register_user("demo-user", password)
            room_id = await stack.room("Demo room")
            link = await stack.link(room_id, "--uses 10 --expires 1d")
            maubot = stack.maubot
            print(
                f"""
thirdparty_invite demo is running.

  Invite link (open it in a browser):
    {link}

  Sign in on that page with:
    Matrix ID  {user.user_id}
    Password   {password}

  Homeserver        {stack.synapse.base_url}   (room admin: {stack.admin.user_id}, same password)
  maubot manager    {maubot.base_url}/_matrix/maubot   (user {maubot.admin.username},
                    password {maubot.admin.password})
  Logs              {stack.synapse.log_path}, {maubot.log_path}

Press Ctrl-C to stop.""",
                flush=True,
            )
            await stop.wait()
        finally:
            print("\nStopping ...", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--state-dir", type=Path, default=ROOT / ".demo")
    parser.add_argument("--password", default="demo-password-1")
    args = parser.parse_args()
    asyncio.run(run(args.state_dir, args.password))


if __name__ == "__main__":
    main()
