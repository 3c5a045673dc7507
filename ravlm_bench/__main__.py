import sys

from ravlm_bench.cli import main

sys.exit(main())
