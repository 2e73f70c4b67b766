"""vonage."""
