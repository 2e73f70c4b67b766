"""The calls page at `/console`: sign-in with one of BRIDGE_API_TOKENS, a signed session cookie,
and one static page that reads the calls API (`app/api/records.py`) and its event stream."""
