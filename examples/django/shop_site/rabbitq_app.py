"""The project's rabbitq app (a Celery project's ``celery.py``).

rabbitq worker -A shop_site.rabbitq_app        # from examples/django/
"""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "shop_site.settings")

from rabbitq.contrib.django import app_from_settings, autodiscover_tasks

app = app_from_settings("shop_site")
# Imports orders/tasks.py (and every installed app's tasks.py): the worker knows them all.
autodiscover_tasks(app)
