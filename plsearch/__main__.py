import sys

from plsearch.cli import main

sys.exit(main())
