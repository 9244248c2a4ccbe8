"""`python -m virtctl.watch -f DIR ...`: the watch verb without the rest of the CLI."""

from .command import main

raise SystemExit(main())
