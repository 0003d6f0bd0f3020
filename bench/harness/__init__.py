"""The benchmark's parts; bench/run.py is the entry point (docs/performance.md)."""
