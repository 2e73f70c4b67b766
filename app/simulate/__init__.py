"""`ultravox-bridge simulate`: send a running service the webhook a provider would send for a
new call, signed as the provider signs it, and say whether a real call would reach Ultravox.

The provider specifics (fields, signing, XML dialect) come from the provider's simulator in
`app/providers/<name>/`; this package builds the request, sends it, and explains the answer.
"""
