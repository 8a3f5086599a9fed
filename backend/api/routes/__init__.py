"""One module per resource, each exposing `router` (listed in `backend.api.app.ROUTERS`)."""

__all__: list[str] = []
