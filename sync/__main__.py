"""``python -m sync`` runs the segsync CLI."""

from sync.cli import main

raise SystemExit(main())
