"""asterisk."""
