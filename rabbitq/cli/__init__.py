"""The ``rabbitq`` command line."""
