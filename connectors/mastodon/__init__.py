"""The Mastodon source (Mastodon.py): a brand account's mentions and its own replies."""
