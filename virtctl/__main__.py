"""`python -m virtctl`: the same as the `virtctl` command."""

from .entry import main

raise SystemExit(main())
