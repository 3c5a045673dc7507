"""``python -m fault_injection`` (run from ``tests/``): see the package's docstring."""

import sys

from .command import main

sys.exit(main())
