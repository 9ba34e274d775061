"""Diagnostics beyond the verdict: layer probes, localisation of the first divergent ONNX node."""
