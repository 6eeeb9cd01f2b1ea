"""Training data: dataset readers, patient splits, the preprocessing cache, patch sampling, augmentation."""
