"""API key authentication: every API call carries a key in `X-API-Key` (stored hashed, SHA-512).

Authentication rather than a bare permission so that a missing key answers 401 with a
`WWW-Authenticate` header, and the key is checked once per request.
"""

import hashlib

from django.conf import settings
from django.core.cache import cache
from rest_framework.authentication import BaseAuthentication
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework_api_key.models import APIKey

HEADER = "X-API-Key"


def key_is_valid(key: str) -> bool:
    """Verify a key against its stored hash, remembering a success for API_KEY_CACHE_SECONDS.

    Only successes are cached (under a SHA-256 of the key, never the key itself), so a wrong key
    is always checked against the database and a revoked one stops working within the TTL.
    """
    ttl = settings.API_KEY_CACHE_SECONDS
    cache_key = "apikey:" + hashlib.sha256(key.encode()).hexdigest()
    if ttl > 0 and cache.get(cache_key):
        return True
    valid = APIKey.objects.is_valid(key)
    if valid and ttl > 0:
        cache.set(cache_key, True, ttl)
    return valid


class APIKeyAuthentication(BaseAuthentication):
    def authenticate(self, request: Request):
        key = request.META.get("HTTP_X_API_KEY", "").strip()
        if not key:
            return None
        if not key_is_valid(key):
            raise AuthenticationFailed("The API key in X-API-Key is unknown, revoked or expired.")
        return (None, key)

    def authenticate_header(self, request: Request) -> str:
        return HEADER


class HasValidAPIKey(BasePermission):
    message = "A valid API key is required in the X-API-Key header."

    def has_permission(self, request: Request, view: object) -> bool:
        return request.auth is not None
