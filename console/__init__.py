"""The support console: server-rendered pages for admins at /console/ (see docs/console.md)."""
