"""Call records: what happened to every call the service touched, kept in a database (SQLite by
default, PostgreSQL for several replicas), fed by the call flows, Ultravox's account webhooks and
the providers' status callbacks, delivered to CALL_EVENTS_URL, and read through /api/calls."""
