"""``python -m MRSynthLib`` = ``mrsynth``."""

import sys

from MRSynthLib.cli import main

sys.exit(main())
