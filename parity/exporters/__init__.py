"""Exporters: each a class built from config by Hydra's `_target_`, turning a model into an Artifact."""
