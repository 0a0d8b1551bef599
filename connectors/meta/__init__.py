"""Meta: a brand's Facebook Page (comments, visitor and tagged posts, Messenger) and its
Instagram professional account (comments, tags, mentions, DMs), over the Graph API with
``requests``: the client (:mod:`.client`), the translation (:mod:`.parse`), the webhook
receiver's pure checks (:mod:`.webhook`) and the endpoint the HTTP listener serves
(:mod:`.receiver`)."""
