"""search: job specs, strategies, the driver loop (Ray + Optuna), the results database and the CLI."""
