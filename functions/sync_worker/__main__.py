"""`python -m functions.sync_worker <command>`: the container's entry point (see cli.py)."""

from functions.sync_worker.cli import main

raise SystemExit(main())
