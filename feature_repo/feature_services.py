"""Feature services: the feature sets models are trained and served with."""

from feast import FeatureService
from feature_views import (
    payments_agg_90d_fv,
    subs_profile_fv,
    support_agg_90d_fv,
    usage_agg_30d_fv,
    user_profile_fv,
)

from streamflow.catalog import SERVICE
from streamflow.feast_repo import model_features

churn_model_v1 = FeatureService(
    name=SERVICE,
    features=[
        model_features(user_profile_fv),
        model_features(subs_profile_fv),
        model_features(usage_agg_30d_fv),
        model_features(payments_agg_90d_fv),
        model_features(support_agg_90d_fv),
    ],
    description="Every model input of churn model v1: demographics, plan, usage, payments, support.",
    tags={"model": "churn", "version": "1", "owner": "streamflow-ds"},
)
