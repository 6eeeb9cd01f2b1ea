"""Performance benchmark of the synthesis pipeline (``make bench``; ``python -m benchmarks.run --help``).

The performance benchmark's modules: ``plans`` (what is measured), ``inputs`` (phantom cases, cached), ``worker`` (one configuration in
a fresh process), ``flops`` (network FLOPs counted from the ONNX graphs), ``throughput`` (the machine's
Conv3d GFLOP/s), ``machine`` (CPU, cores, load), ``report`` (docs/PERFORMANCE.md), ``run`` (the driver).
"""
