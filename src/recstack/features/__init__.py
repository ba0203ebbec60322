"""Side information as data: item and user feature matrices, title text, the KG, rating context.

Stable entry points (other models consume these; names and meanings do not change):

    item_feature_matrix(data, groups=("genres", "year", "kg", "text"))  -> FeatureMatrix (n_items, f)
    user_feature_matrix(data, groups=("age", "gender", "occupation", "region")) -> FeatureMatrix (n_users, f)
    rating_context(data)            -> DataFrame (len(data), 6): day, weekday, hour, user_days, ...
    read_feature_file(path, ...)    -> your own item/user features (CSV/TSV with header)
    read_item_vectors(path, ...)    -> your own dense item vectors (Parquet, or .npy + id list)
    with_features(data, items=..., users=..., vectors=...) -> Interactions with them attached

`FeatureMatrix` holds a float32 CSR `matrix`, the column `names` (`genre=Comedy`, `text:3`) and
each column's group; `select(groups)` keeps some groups.
"""

from recstack.features.context import rating_context
from recstack.features.files import read_feature_file, read_item_vectors, with_features
from recstack.features.matrix import (
    DEFAULT_ITEM_GROUPS,
    DEFAULT_USER_GROUPS,
    ITEM_GROUPS,
    USER_GROUPS,
    FeatureMatrix,
    age_bucket,
    item_feature_matrix,
    user_feature_matrix,
)
from recstack.features.zip_regions import zip_region

__all__ = [
    "DEFAULT_ITEM_GROUPS", "DEFAULT_USER_GROUPS", "ITEM_GROUPS", "USER_GROUPS", "FeatureMatrix",
    "age_bucket", "item_feature_matrix", "rating_context", "read_feature_file", "read_item_vectors",
    "user_feature_matrix", "with_features", "zip_region",
]
