"""The generative translator kinds of the library, one module per kind, and their registry.

- :mod:`~MRSynthLib.methods.translators.window`: what a kind receives and returns per sliding window, and the
  small helpers every kind uses (one-hot codes, encoding, image moments, precision weights);
- :mod:`~MRSynthLib.methods.translators.dropout`: the MC-dropout + flip uncertainty shared by the feed-forward kinds;
- one module per kind (``ldm``, ``cyclegan``, ``targetcode``, ``vqseq2seq``, ``sscf``, ``msgldm``, ``wldm``);
- :mod:`~MRSynthLib.methods.translators.registry`: every kind's network parts, ONNX graphs (with their inputs and
  outputs) and window class, in one table read by the engines, the torch graph builder and the driver
  (:func:`MRSynthLib.methods.translators.driver.predict_translator`).

numpy only: importing this package imports neither torch nor onnxruntime.
"""
