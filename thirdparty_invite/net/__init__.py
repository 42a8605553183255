"""Outbound HTTP: the SSRF guard and the one place client sessions are made."""
