"""Course entry point: write data/processed/training_df.csv for AS_OF (default 2024-01-31).

    python scripts/build_training_dataset.py            # AS_OF=2024-01-31
    AS_OF=2024-02-29 python scripts/build_training_dataset.py

Same function as `streamflow training-frame --as-of ... --out ...` (point-in-time correct,
labels as of the date).
"""

import os
import sys

from streamflow.config import load_settings
from streamflow.training import build_training_frame, write_frame

AS_OF = os.environ.get("AS_OF", "2024-01-31")


def main() -> int:
    settings = load_settings()
    tf = build_training_frame(AS_OF, settings=settings)
    out = write_frame(tf, settings.processed_dir / "training_df.csv")
    print(f"Training dataset for AS_OF={tf.as_of}: {len(tf.frame)} rows, {len(tf.frame.columns)} columns")
    print(tf.frame.head())
    print(f"Saved to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
