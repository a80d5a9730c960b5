"""Built-in models. Each registers itself with :func:`workbench.register_model` on import;
the registry imports them lazily (``workbench.registry._BUILTIN``)."""

__all__: list[str] = []
