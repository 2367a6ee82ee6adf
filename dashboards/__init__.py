"""dashboards: MLflow tracking, results queries, reports and plots."""
