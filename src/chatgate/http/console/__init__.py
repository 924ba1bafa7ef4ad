"""The web console at `/admin/`: server-rendered pages and the first-run wizard."""
