"""From a run folder to a model bundle: safetensors + card, ONNX graphs with their parity check, validation through the inference pipeline."""
