"""The example shop's settings: SQLite, one app, and rabbitq's ``RABBITQ_*`` settings."""

import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "example-only-not-a-secret")
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]

INSTALLED_APPS = ["django.contrib.contenttypes", "orders"]
MIDDLEWARE = ["django.middleware.common.CommonMiddleware"]
ROOT_URLCONF = "shop_site.urls"
WSGI_APPLICATION = "shop_site.wsgi.application"

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("SHOP_DB", str(BASE_DIR / "db.sqlite3")),
        # Each view runs in one transaction: what it enqueues with delay_on_commit is
        # published only if the view returns without raising.
        "ATOMIC_REQUESTS": True,
    }
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
USE_TZ = True

# rabbitq.contrib.django.app_from_settings reads these (any App argument, RABBITQ_ + its
# name in capitals; the broker is RABBITQ_BROKER_URL, as in the environment).
RABBITQ_BROKER_URL = os.environ.get("RABBITQ_BROKER_URL", "amqp://guest:guest@localhost:5672/")
RABBITQ_DEFAULT_QUEUE = "orders"
