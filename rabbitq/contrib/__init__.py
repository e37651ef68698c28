"""Integrations with web frameworks. Each imports its framework only when a function needs
it; without the framework installed, importing one raises ``MissingExtraError`` naming the
extra (``rabbitq[django]``)."""
