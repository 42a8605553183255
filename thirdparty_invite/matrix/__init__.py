"""Matrix-facing pieces: ID grammar, room power rules, room operations over the client."""
