"""`python -m glamor_fast.cli` (used by torchrun) = the `glamor-fast` command."""
import sys

from glamor_fast.cli import main

sys.exit(main())
