"""`python -m virtctl.watch -f DIR ...`: the watch verb without the rest of the CLI."""

from ..cli.watch import main

raise SystemExit(main())
