"""Watching the store over time: Feast's per-feature statistics, distributions on fixed bins, drift,
every month against its baseline, alerts, training-serving skew, the model check, and the
follow-up every face runs after a write (`followup`)."""
