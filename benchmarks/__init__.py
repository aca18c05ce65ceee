"""Value+gradient benchmarks of tracejit against NumPy, hand-written Numba and other AD
frameworks. Run ``python -m benchmarks --help``; see benchmarks/README.md."""
