"""MRSynthLib: synthesize missing MRI contrasts from any available subset.

Importing this package is cheap: it pulls in no torch, SimpleITK, Slicer or Qt.
Heavy dependencies are imported inside the functions that need them.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
