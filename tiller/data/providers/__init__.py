"""Concrete data providers, one module each."""
