"""``python -m session_memory`` runs the ``session-memory`` command."""

from .cli import main

raise SystemExit(main())
