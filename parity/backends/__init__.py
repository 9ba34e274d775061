"""Backends: each a class built from config by Hydra's `_target_`; base.py holds the contract."""
