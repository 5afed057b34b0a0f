"""Feast extensions named in feature_repo/feature_store.yaml (bulk online writes)."""
