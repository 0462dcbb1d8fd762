"""``python -m sync`` runs the segsync CLI (after the same package check as ``segsync``)."""

from sync.entry import main

raise SystemExit(main())
