"""Benchmarks: distqueue against a baseline measured in the same run, on the same server.

Run ``python -m bench`` for all of them, or ``python -m bench NAME`` for one; see
``bench/README.md`` for what each one compares and how to read the ratios.
"""
