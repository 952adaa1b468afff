"""Per-API-key rate limit (429 with Retry-After), configured by API_RATE_LIMIT.

A fixed-window counter in the cache (`add` then `incr`): constant work per request. DRF's
`SimpleRateThrottle` keeps every request time of the window in one cached list, which is
unpickled and re-pickled on each call and grows with the rate (thousands of entries at
6000/min), so it is used here only for its rate parsing.
"""

from time import time as clock

from django.core.cache import cache
from rest_framework.request import Request
from rest_framework.throttling import SimpleRateThrottle


class APIKeyRateThrottle(SimpleRateThrottle):
    """Counts requests per API key prefix (the public, non-secret half of the key).

    Keyed on the key rather than the client address because Laravel calls from a few servers
    behind one address; a request without a valid key never gets here.
    """

    scope = "api_key"

    def get_cache_key(self, request: Request, view: object) -> str | None:
        if not request.auth:
            return None
        prefix = str(request.auth).partition(".")[0]
        return self.cache_format % {"scope": self.scope, "ident": prefix}

    def allow_request(self, request: Request, view: object) -> bool:
        if self.rate is None:
            return True
        key = self.get_cache_key(request, view)
        if key is None:
            return True
        now = clock()
        window_start = int(now // self.duration) * self.duration
        self.wait_seconds = window_start + self.duration - now
        counter = f"{key}:{window_start}"
        cache.add(counter, 0, timeout=self.duration + 1)
        try:
            count = cache.incr(counter)
        except ValueError:  # expired between add and incr
            cache.set(counter, 1, timeout=self.duration + 1)
            count = 1
        return count <= self.num_requests

    def wait(self) -> float:
        return max(self.wait_seconds, 1.0)
