"""The X API v2 stand-in: store, auth, rate limits and usage, search, rendering."""
