"""`python -m wanserve.engine.generate_py`: see wanserve.engine.generate_py.cli."""

import sys

from wanserve.engine.generate_py.cli import main

sys.exit(main())
