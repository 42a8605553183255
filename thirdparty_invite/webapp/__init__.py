"""The web front: JSON API routes, HTTP plumbing and the static pages."""
