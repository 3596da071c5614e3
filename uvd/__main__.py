"""`python -m uvd …` is `uvd …` (for `ray job submit` entrypoints that should not rely on PATH)."""
import sys

from uvd.cli import main

sys.exit(main())
