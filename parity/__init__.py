"""parity: declarative regression checks that a converted model still computes the same thing."""

__version__ = "0.1.0"
