"""A stand-in for the Bluesky XRPC API (PDS and appview), written from the lexicons."""
