"""Periodic tasks: the pure planner and state (``planner.py``, ``state.py``) and the process
that leads or stands by (``runner.py``). Schedules themselves are in ``rabbitq.beat.schedules``."""
