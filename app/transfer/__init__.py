"""Transfer to a person: the agent's tool and the provider-neutral flow. The routes-file section
is routing's (app/routing/transfer.py); the interface each provider's driver implements is
app/providers/transferring.py, and the drivers live in the provider packages
(app/providers/<name>/transfer.py), registered through their SPEC."""
