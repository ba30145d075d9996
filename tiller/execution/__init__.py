"""Execution: orders from targets, the broker interface and its implementations,
fills, reconciliation and portfolio accounting (SPEC stage 8)."""
