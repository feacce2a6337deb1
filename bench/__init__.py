"""On-demand benchmarks (see bench/README.md); never part of the test suite."""
