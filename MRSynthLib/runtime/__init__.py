"""Running the fusion networks: the torch and onnxruntime engines and the choice between them, the sliding-window
driver (windows, stochastic passes, contribution maps)."""
