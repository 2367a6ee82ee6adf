-- Runs once, when the PostgreSQL volume is first initialised: MLflow keeps its tracking
-- data in its own database, beside the results database (both have an alembic_version table).
CREATE DATABASE mlflow;
