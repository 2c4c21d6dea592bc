import sys

from edgessl.cli import main

sys.exit(main())
