"""Slicer glue for MRSynth: MRML adapter, child-process runner, result display, comparison.

Every module here imports only ``vtk``, the MRML classes of ``slicer`` (``slicer.vtkMRML*``), numpy,
SimpleITK and ``MRSynthLib`` - never ``qt``, ``ctk`` or the GUI parts of ``slicer.util`` - so it runs
both inside 3D Slicer and under the ``slicer-core`` package (a real ``vtkMRMLScene`` without Qt), where
the tests in ``Testing/slicer_module/`` exercise it. The Qt widget in ``MRSynth.py`` stays thin.

MRML nodes are passed in by the caller; ``slicer`` is imported inside the functions that create
nodes, so importing this package is cheap and has no side effects.
"""
