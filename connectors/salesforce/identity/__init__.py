"""Who an author is in the org: the look-up by social identity, SocialPersonas, candidate search
for scoring, the change watch, the copy of keys on file, merges followed, Leads made."""
