"""Batch synthesis with 3D Slicer's Python: the same arguments and code as ``mrsynth batch``.

    Slicer --no-splash --no-main-window --python-script <extension>/Scripts/batch.py -- \\
        --input-dir BraTS2023/ --target t1ce --output-dir out/ --resume

(``PythonSlicer <extension>/Scripts/batch.py ...`` and plain ``python`` work too.) Every flag of ``mrsynth batch``
is passed through, e.g. ``--scheduler local:4`` or ``--scheduler tcp://HOST:8786`` to run the cases on a Dask
cluster (needs ``dask[distributed]`` in Slicer's Python; docs/SCALING.md). No dialogs are shown;
the exit code is that of ``mrsynth batch``: 0 when every case succeeded or was skipped, 1 when a case
failed (see ``summary.csv``), 2 for unusable arguments.
"""

from __future__ import annotations

import os
import sys


def _library_on_path() -> None:
    """Make ``MRSynthLib`` importable: next to the module (installed extension) or in the repository root."""
    scripts = os.path.dirname(os.path.abspath(__file__))
    module_dir = os.path.dirname(scripts)
    for folder in (module_dir, os.path.dirname(module_dir)):
        if os.path.isfile(os.path.join(folder, "MRSynthLib", "__init__.py")):
            if folder not in sys.path:
                sys.path.insert(0, folder)
            return


def main(argv: list[str]) -> int:
    """Run ``mrsynth batch`` with ``argv`` (a leading ``--`` separating Slicer's own options is dropped)."""
    if argv and argv[0] == "--":
        argv = argv[1:]
    _library_on_path()
    from MRSynthLib.commands.cli import main as cli_main

    try:
        return cli_main(["batch", *argv])
    except SystemExit as stop:  # argparse: --help or unusable arguments
        return stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 2)
    except Exception as error:  # noqa: BLE001 - inside Slicer an escaping exception would leave the app running
        print(f"mrsynth batch: error: unexpected {type(error).__name__}: {error}", file=sys.stderr)
        return 3


def _exit(code: int) -> None:
    """Leave the Slicer application (which does not quit after a script by itself) or the interpreter."""
    try:
        import slicer
    except ImportError:
        slicer = None
    if slicer is not None and getattr(slicer, "app", None) is not None:
        slicer.util.exit(code)
    else:
        sys.exit(code)


if __name__ == "__main__":
    _exit(main(sys.argv[1:]))
