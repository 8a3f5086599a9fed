"""trustmarket's platform layer: settings, chain client, content store, persistence, REST API and CLI."""

__all__: list[str] = []
