"""The newsroom: the editors' web app under /admin (server-rendered, works without JavaScript)."""
