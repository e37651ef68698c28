"""Integrations with web frameworks, each importable without the framework installed."""
