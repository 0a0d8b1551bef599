"""X (Twitter) API v2 source: tweepy client, parsing, authors, backfill search, usage, user auth."""
