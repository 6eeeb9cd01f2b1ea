"""MRSynth training package: datasets, stage-1 autoencoders, stage-2 translators, bundle export.

Depends on MRSynthLib (never the other way round).
"""
