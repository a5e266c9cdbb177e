"""Who may mint which identities: keys, scopes, enrollments, rates, quotas and idempotency.

Neither Flask nor SQLAlchemy is imported here: the store is passed in, so the CLI, the HTTP API
and tests drive the same rules.
"""
