"""``python -m prunelib`` entry point."""
import sys

from prunelib.cli import main

sys.exit(main())
