"""`python -m ragserve`: the same as the `ragserve` command."""

import sys

from ragserve.cli import main

sys.exit(main())
