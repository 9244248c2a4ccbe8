"""`python -m virtctl`: the same as the `virtctl` command."""

from .cli import main

raise SystemExit(main())
