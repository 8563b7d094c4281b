"""``python -m derf_zoo.commands.benchmark fmnist ...``: ``derf-zoo benchmark`` without the console script."""

import sys

from derf_zoo.commands.benchmark import main

sys.exit(main())
