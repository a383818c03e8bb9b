"""The package version, defined once (``setup.cfg`` reads it from here).
A leaf module: it imports nothing."""

__version__ = "0.1.0"
