"""`python -m unimage.gpucheck --out DIR`."""

from unimage.gpucheck.cli import main

raise SystemExit(main())
