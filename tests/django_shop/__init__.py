"""An installed Django app with a ``tasks.py``, for tests/test_django.py."""
