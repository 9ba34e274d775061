"""Exporters, one module per family; each defines its config dataclass beside its class (parity.plugins)."""
