"""Helpers shared by the tests (``Testing/`` is on ``sys.path``: its conftest is the rootdir conftest)."""
