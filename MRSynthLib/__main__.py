"""``python -m MRSynthLib`` = ``mrsynth``."""

import sys

from MRSynthLib.commands.cli import main

sys.exit(main())
