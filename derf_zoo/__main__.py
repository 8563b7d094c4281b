import sys

from derf_zoo.cli import main

sys.exit(main())
