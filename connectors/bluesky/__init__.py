"""Bluesky: a brand account\x27s mentions, replies and quotes, and its own replies, over atproto."""
