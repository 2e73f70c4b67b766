"""plivo."""
