"""The agent project's own application package (most FastAPI projects call theirs ``app``)."""

OWNER = "project"
