"""Remote providers, one module per upstream API dialect (``specs`` declares them,
``factory`` builds them, ``http_provider`` is what every HTTP dialect shares)."""
