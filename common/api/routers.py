"""The API's router: every route is spelled by a viewset action (`@action(url_path=..., url_name=...)`).

The contract's paths predate the viewsets and do not follow one prefix per resource (`predict`,
`predict/batch` and `predictions/{booking_id}` are one resource), so the router adds no `-list` or
`-detail` routes of its own: each action names its path under the registered prefix, with Django path
converters, no trailing slash, and its URL name as the contract's views had it.
"""

from rest_framework.routers import DynamicRoute, SimpleRouter


class ActionRouter(SimpleRouter):
    routes = [DynamicRoute(url=r"^{prefix}/{url_path}$", name="{url_name}", detail=False, initkwargs={})]

    def __init__(self) -> None:
        super().__init__(trailing_slash=False, use_regex_path=False)
