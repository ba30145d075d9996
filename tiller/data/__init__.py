"""Market and macro data: the provider interface, the providers, and the fallback chain."""
