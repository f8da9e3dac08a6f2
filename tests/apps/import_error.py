"""An app whose import fails: the server must exit non-zero with this traceback, before it
listens."""

raise ImportError("import-error-app-token: a dependency of the app is missing")
