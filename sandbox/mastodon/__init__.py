"""A loopback stand-in for the Mastodon REST API (one instance), as far as syncd reads it."""
