"""The thin edge: FastAPI app, routers, error mapping, auth, settings and the CLI."""
