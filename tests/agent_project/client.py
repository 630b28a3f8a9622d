"""The agent project's own ``client`` module: the installed client must not shadow it."""

OWNER = "project"
