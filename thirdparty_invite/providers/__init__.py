"""Providers: where a person proves an entitlement (GitHub, Patreon, GitLab, Discord, any
OpenID Connect provider). One module each behind `base.Provider`; `oauth` is the OAuth
machinery they share; `registry` is the only module that names them all. Nothing here
knows about maubot, rooms or the database."""
