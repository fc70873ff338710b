"""One module per feature; each exposes `register(app, deps)`, called from `build_app`."""
