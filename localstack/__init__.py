"""Local real parts for the demo, tests and benchmarks: Temporal dev server, HAProxy, demo services."""
