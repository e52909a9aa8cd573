"""fmq: low-bit weight quantization of flow-matching image generators, measured and shown."""

__version__ = "0.1.0"
