"""SOQL for the stand-in: parse (query), bind, evaluate, indexes, relationship paths."""
