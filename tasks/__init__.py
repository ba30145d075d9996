"""Prefect tasks: thin wrappers that load inputs, call the pure stage code, and persist
the output together with the stage's checkpoint."""
