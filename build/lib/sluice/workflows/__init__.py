"""Deterministic orchestration: the rollout workflow."""
