"""Proving a Matrix ID: the OpenID verifier and federation server discovery (no maubot)."""
