"""ratd, the Ratatoskr gateway daemon.

Layers, data flowing one way: ``service`` (gRPC in and out) → ``core`` (routing,
fallback, validation, limits) → ``providers`` (one module per upstream API) and
``local`` (model manager, batcher, ONNX sessions). ``errors``, ``config`` and
``secrets`` sit beneath them all.
"""

__version__ = "0.1.0"
