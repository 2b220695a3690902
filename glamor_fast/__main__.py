"""`python -m glamor_fast` = the `glamor-fast` command."""
import sys

from .cli import main

sys.exit(main())
