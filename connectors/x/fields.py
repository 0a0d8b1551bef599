"""What every X timeline or search request asks for: the post and user fields the parser
reads, and the expansions that bring the authors and referenced posts along."""

TWEET_FIELDS = ["created_at", "author_id", "conversation_id", "in_reply_to_user_id", "lang"]
TWEET_FIELDS += ["referenced_tweets", "entities"]
USER_FIELDS = ["username", "name", "description", "location", "url", "created_at"]
EXPANSIONS = ["author_id", "in_reply_to_user_id", "referenced_tweets.id"]
EXPANSIONS += ["referenced_tweets.id.author_id", "entities.mentions.username"]
