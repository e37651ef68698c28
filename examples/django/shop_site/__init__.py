"""A Django project whose views enqueue rabbitq tasks after their transaction commits."""
