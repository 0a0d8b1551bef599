"""Who X reads as: per-account user credentials (OAuth 1.0a, OAuth 2.0), the token files syncd
refreshes, and ``syncd x authorize``'s consent flow that fills them."""
