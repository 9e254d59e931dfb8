"""Real parts on loopback for demo, tests and benchmarks: Temporal, HAProxy, Prometheus, demo apps.

Each helper starts a process on a free port, waits until it answers, and stops it by PID.
"""
