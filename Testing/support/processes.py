"""Running MRSynth in a child process."""

from __future__ import annotations

from support.paths import REPO


def synthesize_without_torch(arguments: list[str], timeout: float = 120.0):
    """``mrsynth synthesize <arguments>`` in a fresh interpreter where ``import torch`` and ``import monai`` fail
    (and torch is checked never to be imported); returns the finished ``subprocess.CompletedProcess``."""
    import subprocess
    import sys

    script = (
        "import sys; sys.modules['torch'] = None; sys.modules['monai'] = None\n"
        "from MRSynthLib.commands.cli import main\n"
        f"code = main(['synthesize', *{[str(a) for a in arguments]!r}])\n"
        "assert sys.modules.get('torch') is None\n"
        "sys.exit(code)\n"
    )
    return subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=timeout)
