"""WSGI entry point (gunicorn batterypred.wsgi)."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "batterypred.settings")
application = get_wsgi_application()
