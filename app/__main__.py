"""``python -m app`` runs the ``session-memory`` command."""

from .cli import main

raise SystemExit(main())
