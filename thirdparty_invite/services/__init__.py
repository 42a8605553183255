"""The services the fronts call: links, grants, sessions, the invite queue, reporting."""
