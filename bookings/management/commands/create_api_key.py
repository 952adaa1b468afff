"""`python manage.py create_api_key NAME`: a new API key, printed alone on the last line.

Only a hash is stored; the key cannot be shown again.
"""

from django.core.management.base import BaseCommand
from rest_framework_api_key.models import APIKey


class Command(BaseCommand):
    help = "Create an API key for the X-API-Key header and print it (shown once; only its hash is stored)."

    def add_arguments(self, parser):
        parser.add_argument("name", help="Who the key is for, e.g. laravel-production.")

    def handle(self, *args, name: str, **options):
        _, key = APIKey.objects.create_key(name=name)
        self.stderr.write(f"API key '{name}' created. Send it in the X-API-Key header; it is not shown again.")
        self.stdout.write(key)
