"""The peers' apps of the fan-out benchmark (:mod:`benchmarks.fanout`)."""
