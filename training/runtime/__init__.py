"""Where and how training runs: devices and ranks (torchrun), mixed precision, run folders and pickle-free checkpoints, the shared loop mechanics."""
