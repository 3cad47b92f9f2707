"""The system of record: SQLAlchemy models, engine and the operations the pipeline needs."""
