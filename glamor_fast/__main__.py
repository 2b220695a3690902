"""`python -m glamor_fast` = the `glamor-fast` command."""
import sys

from glamor_fast.cli import main

sys.exit(main())
