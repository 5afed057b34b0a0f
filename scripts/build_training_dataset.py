"""Course entry point: write data/processed/training_df.csv for AS_OF (default 2024-01-31).

    python scripts/build_training_dataset.py            # AS_OF=2024-01-31
    AS_OF=2024-02-29 python scripts/build_training_dataset.py

Same frame as `streamflow training-frame --as-of ... --out ...` (point-in-time correct, labels
as of the date), kept first as a Feast saved dataset (`streamflow dataset list` shows how it was
made) and exported from it; a kept dataset that is still current is read, not built again.
"""

import os
import sys

from streamflow.core.config import load_settings
from streamflow.features.datasets import frame_for
from streamflow.features.training import write_frame

AS_OF = os.environ.get("AS_OF", "2024-01-31")


def main() -> int:
    settings = load_settings()
    tf, dataset = frame_for(AS_OF, settings=settings, save=True)
    out = write_frame(tf, settings.processed_dir / "training_df.csv")
    print(f"Training dataset for AS_OF={tf.as_of}: {len(tf.frame)} rows, {len(tf.frame.columns)} columns")
    print(tf.frame.head())
    print(f"Saved to {out}" + (f" (dataset {dataset.name}, checksum {dataset.checksum[:12]})" if dataset else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
