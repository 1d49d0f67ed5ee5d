"""Benchmarks, profilers and diagnostics, each run from the repository root as ``python -m scripts.NAME``."""
