"""``python -m cnnfeatures.cli``: the command line."""

import sys

from .parser import main

sys.exit(main())
