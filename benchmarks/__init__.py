"""Benchmarks of the pipeline's hot paths against the naive ways, in one run.

`python -m benchmarks --scale 1000000` runs them all; see README.md, section Benchmarks.
"""
