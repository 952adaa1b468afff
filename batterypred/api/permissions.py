"""API key authentication: every API call carries a key in `X-API-Key` (stored hashed, SHA-512).

Authentication rather than a bare permission so that a missing key answers 401 with a
`WWW-Authenticate` header, and the key is checked once per request.
"""

from rest_framework.authentication import BaseAuthentication
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework_api_key.models import APIKey

HEADER = "X-API-Key"


class APIKeyAuthentication(BaseAuthentication):
    def authenticate(self, request: Request):
        key = request.META.get("HTTP_X_API_KEY", "").strip()
        if not key:
            return None
        if not APIKey.objects.is_valid(key):
            raise AuthenticationFailed("The API key in X-API-Key is unknown, revoked or expired.")
        return (None, key)

    def authenticate_header(self, request: Request) -> str:
        return HEADER


class HasValidAPIKey(BasePermission):
    message = "A valid API key is required in the X-API-Key header."

    def has_permission(self, request: Request, view: object) -> bool:
        return request.auth is not None
