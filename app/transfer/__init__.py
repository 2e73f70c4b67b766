"""Transfer to a person: the routes-file section, the agent's tool, the provider-neutral flow and
the interface each provider's transfer driver implements (app/providers/*_transfer.py)."""
