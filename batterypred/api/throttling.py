"""Per-API-key rate limit (429 with Retry-After), configured by API_RATE_LIMIT."""

from rest_framework.request import Request
from rest_framework.throttling import SimpleRateThrottle


class APIKeyRateThrottle(SimpleRateThrottle):
    """Counts requests per API key prefix (the public, non-secret half of the key).

    Keyed on the key rather than the client address because Laravel calls from a few servers
    behind one address; a missing key is refused by the permission before this matters.
    """

    scope = "api_key"

    def get_cache_key(self, request: Request, view: object) -> str | None:
        if not request.auth:
            return None
        prefix = str(request.auth).partition(".")[0]
        return self.cache_format % {"scope": self.scope, "ident": prefix}
