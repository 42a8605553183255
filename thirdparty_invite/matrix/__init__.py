"""Matrix-facing pieces: ID grammar, room power rules, and the room operations over maubot's client."""
