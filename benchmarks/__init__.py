"""Benchmarks of flask_streaming against its peers: ``python benchmarks/run.py``."""
