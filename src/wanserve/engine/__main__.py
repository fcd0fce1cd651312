"""`python -m wanserve.engine`: see wanserve.engine.cli."""

import sys

from wanserve.engine.cli import main

sys.exit(main())
