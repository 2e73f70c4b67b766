"""Calls from a browser: the routes open to the web (`web:` in the routes file), the limits that
keep a public "talk to us" button from spending the account's credit, the signed tokens a
site's own backend may require, and the `/talk/<route>` page that joins with the Ultravox SDK."""
