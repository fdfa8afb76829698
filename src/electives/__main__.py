import sys

from electives.cli import main

sys.exit(main())
