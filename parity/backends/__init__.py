"""Backends, one module per runtime, each defining its config dataclass beside its class (parity.plugins);
base.py holds the contract: `with backend.prepare(artifact) as session: session.infer(feeds)`."""
