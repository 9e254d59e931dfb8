"""`python -m sluice ARGS` is the `sluice` command."""

from sluice.cli.main import main

raise SystemExit(main())
