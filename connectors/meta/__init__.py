"""Meta: a brand's Facebook Page (comments, visitor and tagged posts, Messenger) and its
Instagram professional account (comments, tags, mentions, DMs), over the Graph API with
``requests``. Where things are:

- :mod:`.settings`: the two source types' settings and their checks;
- :mod:`.walk`: how a walk reads (the watch window, the marks, the walk's token) and what
  both sources share (:class:`~connectors.meta.walk.MetaSource`);
- :mod:`.facebook`, :mod:`.instagram`: the two sources, each its endpoints and its check;
- :mod:`.threads`: how a walk reads an inbox (Messenger, Instagram Direct);
- :mod:`.backfill`: what part of a past window Graph reaches, as backfill segments;
- :mod:`.hints`: how a walk reads the objects webhook deliveries named;
- :mod:`.client` the Graph client (pacing, errors), :mod:`.parse` the translation;
- :mod:`.webhook` the webhook receiver's pure checks, :mod:`.receiver` the endpoint the HTTP
  listener serves."""
