"""trustmarket's platform (settings, errors, chain, storage, db), its services (marketplace, committee) and its
composition (api, cli); docs/architecture.md draws the layers."""

__all__: list[str] = []
