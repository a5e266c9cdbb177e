"""The HTTP API: views, request parsing, authentication and the one renderer of problems."""
