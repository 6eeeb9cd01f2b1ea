"""Network definitions shared by inference (torch backend) and the training package.

Importing this subpackage imports torch; ``import MRSynthLib`` alone does not.
"""
