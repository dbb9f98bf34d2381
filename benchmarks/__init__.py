"""Benchmark scripts (run by hand on real hardware) and the module they share, `benchmarks.cells`."""
