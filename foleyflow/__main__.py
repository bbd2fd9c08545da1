import sys

from foleyflow.cli import main

sys.exit(main())
