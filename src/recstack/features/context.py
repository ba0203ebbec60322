"""The context of each rating, derived from its timestamp (Unix seconds, UTC).

Columns, one row per interaction in row order (Koren, "Collaborative filtering with temporal
dynamics", KDD 2009, uses the same day index; Rendle, "Factorization machines with libFM", 2012,
feeds such context to an FM):

| column            | meaning                                                           |
|-------------------|-------------------------------------------------------------------|
| day               | days since the data's first rating (int)                          |
| weekday           | 0 = Monday … 6 = Sunday (UTC)                                     |
| hour              | 0 … 23 (UTC)                                                      |
| user_days         | days since this user's first rating in the data (float ≥ 0)       |
| item_age_days     | days since the item's first rating in the data (float ≥ 0)        |
| item_age_years    | rating year minus the item's release year (NaN when unknown)      |

Pass `reference` (e.g. the full data a training part was cut from) to measure "first rating"
over it rather than over `data` alone; indices must share the vocabularies.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from recstack.data.interactions import Interactions

DAY = 86_400


def rating_context(data: Interactions, reference: Interactions | None = None) -> pd.DataFrame:
    """(len(data), 6) frame of context columns (see the module table), aligned with data's rows."""
    ref = data if reference is None else reference
    ts = data.timestamp.astype(np.int64)
    if len(ref) == 0:
        origin = int(ts.min()) if len(ts) else 0
        u_first = np.full(data.n_users, origin, np.int64)
        i_first = np.full(data.n_items, origin, np.int64)
    else:
        origin = int(ref.timestamp.min())
        u_first = np.full(data.n_users, np.iinfo(np.int64).max)
        np.minimum.at(u_first, ref.user, ref.timestamp)
        i_first = np.full(data.n_items, np.iinfo(np.int64).max)
        np.minimum.at(i_first, ref.item, ref.timestamp)
    # a user/item absent from the reference starts at its own first row in `data`
    for first, idx in ((u_first, data.user), (i_first, data.item)):
        missing = first == np.iinfo(np.int64).max
        if missing.any():
            own = np.full(len(first), np.iinfo(np.int64).max)
            np.minimum.at(own, idx, ts)
            first[missing] = own[missing]
    when = pd.to_datetime(ts, unit="s", utc=True)
    out = pd.DataFrame({
        "day": (ts - origin) // DAY,
        "weekday": when.day_of_week.to_numpy(np.int64),
        "hour": when.hour.to_numpy(np.int64),
        "user_days": np.maximum(ts - u_first[data.user], 0) / DAY,
        "item_age_days": np.maximum(ts - i_first[data.item], 0) / DAY,
    })
    years = np.full(len(ts), np.nan)
    f = data.item_features
    if f is not None and "year" in f:
        release = pd.to_numeric(f["year"], errors="coerce").to_numpy(np.float64)
        years = when.year.to_numpy(np.float64) - release[data.item]
    out["item_age_years"] = years
    return out
