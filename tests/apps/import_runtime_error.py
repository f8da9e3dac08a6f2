"""An app whose import raises something other than ImportError at module level."""

raise RuntimeError("import-runtime-error-token: the app's settings are broken")
