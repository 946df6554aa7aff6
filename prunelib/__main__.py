"""``python -m prunelib`` entry point."""

import sys

from prunelib.cli.main import main

sys.exit(main())
