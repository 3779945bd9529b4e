"""`python -m unimage` is the same as the `unimage` command."""

from unimage.cli import main

raise SystemExit(main())
