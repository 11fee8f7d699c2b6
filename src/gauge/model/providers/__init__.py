"""Built-in providers, one module per wire-format family (registered lazily)."""
