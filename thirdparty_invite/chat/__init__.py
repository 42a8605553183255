"""The chat front: `!invitebot` commands and the bot's own memberships."""
