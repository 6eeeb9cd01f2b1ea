"""The machine's measured float32 Conv3d throughput (GFLOP/s) in torch and in onnxruntime.

One large "same" 3x3x3 convolution, input ``(1, C, D, D, D)`` → ``(1, C, D, D, D)``, timed after a
warm-up; the best of ``repeats`` calls is kept (the least disturbed by other processes). The same convolution
in bfloat16 (torch) is measured for comparison only: the pipeline runs float32.
FLOPs = 2 x D^3 x C x C x 27.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class ConvProbe:
    """The probe convolution: ``channels`` in and out, cube edge ``edge``, 3x3x3 kernel."""

    channels: int = 32
    edge: int = 64
    repeats: int = 3

    @property
    def flops(self) -> int:
        return 2 * self.edge**3 * self.channels * self.channels * 27


def _best_seconds(call, repeats: int) -> tuple[float, float]:
    """(wall, CPU) seconds of the fastest of ``repeats`` calls after one warm-up call."""
    call()  # warm-up (allocations, kernel selection)
    best = (float("inf"), float("inf"))
    for _ in range(repeats):
        start, cpu_start = time.perf_counter(), time.process_time()
        call()
        best = min(best, (time.perf_counter() - start, time.process_time() - cpu_start))
    return best


def torch_conv_seconds(probe: ConvProbe, threads: int, bfloat16: bool = False) -> tuple[float, float]:
    import torch

    torch.set_num_threads(threads)
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(1, probe.channels, probe.edge, probe.edge, probe.edge, generator=generator)
    conv = torch.nn.Conv3d(probe.channels, probe.channels, 3, padding=1).eval()
    if bfloat16:  # not used by the pipeline: shows what bfloat16 kernels (AVX512-BF16 / AMX) would give
        x, conv = x.to(torch.bfloat16), conv.to(torch.bfloat16)

    def call():
        with torch.inference_mode():
            conv(x)

    return _best_seconds(call, probe.repeats)


def onnx_conv_seconds(probe: ConvProbe, threads: int) -> tuple[float, float]:
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    c, d = probe.channels, probe.edge
    weight = numpy_helper.from_array(rng.standard_normal((c, c, 3, 3, 3)).astype(np.float32), "W")
    bias = numpy_helper.from_array(np.zeros(c, np.float32), "B")
    node = helper.make_node("Conv", ["X", "W", "B"], ["Y"], pads=[1] * 6, kernel_shape=[3, 3, 3])
    graph = helper.make_graph([node], "conv_probe",
                              [helper.make_tensor_value_info("X", TensorProto.FLOAT, [1, c, d, d, d])],
                              [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [1, c, d, d, d])],
                              initializer=[weight, bias])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8  # the IR version of opset 17, readable by every onnxruntime that runs the bundles
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    onnx.checker.check_model(model)
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    x = rng.standard_normal((1, c, d, d, d)).astype(np.float32)
    return _best_seconds(lambda: session.run(None, {"X": x}), probe.repeats)


def measure(probe: ConvProbe, threads: int) -> dict:
    """``{"torch": GFLOP/s, "onnx": GFLOP/s, "torch_per_cpu_s": GFLOP per CPU second, ...}`` for one thread
    count (call in a fresh process)."""
    out = {"threads": threads, "probe": asdict(probe), "gflop": probe.flops / 1e9}
    timers = (("torch", torch_conv_seconds), ("onnx", onnx_conv_seconds),
              ("torch_bf16", lambda p, t: torch_conv_seconds(p, t, bfloat16=True)))
    for backend, timer in timers:
        wall, cpu = timer(probe, threads)
        out.update({f"{backend}_s": wall, f"{backend}_cpu_s": cpu, backend: probe.flops / wall / 1e9,
                    f"{backend}_per_cpu_s": probe.flops / max(cpu, 1e-9) / 1e9})
    return out
