"""Course entry point: print the online features of one user.

    python scripts/debug_online_features.py 7590-VHVEG

Prints what the course's version printed (a dict of lists keyed by feature), through the
same library as `streamflow online`; an unknown user is said to be not found.
"""

import sys

from streamflow.features.online import InvalidUserId, online_features

FEATURES = ["subs_profile_fv:months_active", "subs_profile_fv:monthly_fee", "subs_profile_fv:paperless_billing"]


def main(argv: list[str]) -> int:
    user_id = argv[1] if len(argv) > 1 else "7590-VHVEG"
    try:
        rec = online_features([user_id], features=FEATURES)[0]
    except InvalidUserId as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"Online features for user: {user_id}")
    if not rec.found:
        print(f"{user_id} not found in the online store")
        return 1
    print({"user_id": [user_id], **{k: [v] for k, v in rec.features.items()}})
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
