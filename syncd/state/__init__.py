"""State: the SQLAlchemy schema, migrations, and the queries the pipeline runs."""
