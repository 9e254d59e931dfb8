"""Sluice: progressive delivery on Temporal (canary, blue/green, rings) with automatic rollback.

Everything the distribution installs lives under this one import package. The sub-packages
are the repository's top-level folders: `sluice.contracts` (the data contracts),
`sluice.workflows`, `sluice.activities`, `sluice.runtime` (connection, codec, telemetry),
`sluice.cli` (the `sluice` command, in `starter/`) and `sluice.worker`.
"""
