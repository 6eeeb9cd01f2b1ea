"""Experiments around training: the stage-1 ablation, the methods table, screening calibration and dry runs of GPU configs."""
