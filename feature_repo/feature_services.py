"""Feature services: the feature sets models are trained and served with."""

from derived_features import derived_features_fv
from feast import FeatureService
from feature_views import (
    payments_agg_90d_fv,
    subs_profile_fv,
    support_agg_90d_fv,
    usage_agg_30d_fv,
    user_profile_fv,
)

from streamflow.catalog import SERVICE, SERVICE_V2
from streamflow.feast_repo import model_features


def v1_features():
    return [
        model_features(user_profile_fv),
        model_features(subs_profile_fv),
        model_features(usage_agg_30d_fv),
        model_features(payments_agg_90d_fv),
        model_features(support_agg_90d_fv),
    ]


churn_model_v1 = FeatureService(
    name=SERVICE,
    features=v1_features(),
    description="Every model input of churn model v1: demographics, plan, usage, payments, support.",
    tags={"model": "churn", "version": "1", "owner": "streamflow-ds"},
)

# v1's inputs and every derived feature the feature lab added (none yet: v1's inputs alone)
churn_model_v2 = FeatureService(
    name=SERVICE_V2,
    features=v1_features() + ([model_features(derived_features_fv)] if derived_features_fv is not None else []),
    description="Churn model v2: v1's inputs and the derived features added in the feature lab.",
    tags={"model": "churn", "version": "2", "owner": "streamflow-ds"},
)
