"""``python -m cli <command> ...``: the same as the ``scada`` command."""

import sys

from cli.main import main

sys.exit(main())
