"""A FastAPI app that enqueues with ``await task.adelay(...)`` (see docs/frameworks.md)."""
