"""Outbound calls: the agent phones someone."""
