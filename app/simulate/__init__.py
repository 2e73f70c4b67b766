"""`ultravox-bridge simulate`."""
