"""Feature services: the feature sets models are trained and served with."""

from feast import FeatureService
from feature_views import (
    payments_agg_90d_fv,
    subs_profile_fv,
    support_agg_90d_fv,
    usage_agg_30d_fv,
    user_profile_fv,
)


def _model_features(fv):
    """The view's model inputs: every field but the `<view>_as_of` lineage column."""
    return fv[[f.name for f in fv.schema if not f.name.endswith("_as_of")]]


churn_model_v1 = FeatureService(
    name="churn_model_v1",
    features=[
        _model_features(user_profile_fv),
        _model_features(subs_profile_fv),
        _model_features(usage_agg_30d_fv),
        _model_features(payments_agg_90d_fv),
        _model_features(support_agg_90d_fv),
    ],
    description="Every model input of churn model v1: demographics, plan, usage, payments, support.",
    tags={"model": "churn", "version": "1", "owner": "streamflow-ds"},
)
