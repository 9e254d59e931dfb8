"""Runtime shared by the worker and the CLI: the Temporal connection, payload encryption, telemetry."""
