"""Request and response bodies of the HTTP API (pydantic): limits and field checks live here."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

MAX_ID = 200
MAX_EVENTS = 1000
# ids are stored verbatim, whatever they hold, except NUL (no database keeps it) and lone surrogates
ID_PATTERN = r"^[^\x00]+$"


def _clean(text: str) -> str:
    if "\x00" in text:
        raise ValueError("must not contain a NUL character")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode (no lone surrogates)") from None
    return text


Id = Annotated[str, Field(min_length=1, max_length=MAX_ID), AfterValidator(_clean)]
Text = Annotated[str, Field(max_length=10_000), AfterValidator(_clean)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class EventIn(Strict):
    event_id: Id = Field(description="client-chosen id; a repeated id is stored once")
    item: Id
    type: Literal["rating", "click", "view", "impression"]
    value: float | None = Field(default=None, allow_inf_nan=False, ge=-1e6, le=1e6,
                                description="the rating (needed for type rating) or a weight")
    timestamp: int | None = Field(default=None, ge=0, le=10**12, description="seconds since 1970")

    @model_validator(mode="after")
    def _rating_has_value(self) -> EventIn:
        if self.type == "rating" and self.value is None:
            raise ValueError("value: a rating event needs a value")
        return self


class EventBatch(Strict):
    events: list[EventIn] = Field(min_length=1, max_length=MAX_EVENTS)


class RatingIn(Strict):
    item: Id
    value: float = Field(allow_inf_nan=False, ge=-1e6, le=1e6)


class NewUserIn(Strict):
    user: Id | None = None
    ratings: list[RatingIn] = Field(min_length=1, max_length=MAX_EVENTS)
    k: int = Field(default=10, ge=1, le=1000)


class BatchIn(Strict):
    users: list[Id] = Field(min_length=1, max_length=1000)
    k: int = Field(default=10, ge=1, le=1000)
    exclude_seen: bool = True


Scalar = str | int | float | bool | None


class ItemIn(Strict):
    title: Text | None = None
    genres: list[Annotated[str, Field(min_length=1, max_length=100), AfterValidator(_clean)]] | None = \
        Field(default=None, max_length=100)
    year: int | None = Field(default=None, ge=0, le=9999)
    features: dict[Annotated[str, Field(min_length=1, max_length=100), AfterValidator(_clean)], Scalar] | None = \
        Field(default=None, max_length=1000, description="any further feature columns")

    @model_validator(mode="after")
    def _clean_features(self) -> ItemIn:
        for value in (self.features or {}).values():
            if isinstance(value, str):
                _clean(value)
            if isinstance(value, float) and value != value:
                raise ValueError("features: NaN is not a value")
        return self


class PreferencesIn(Strict):
    """A user's re-ranking preferences (PUT replaces them all; omitted fields take their defaults)."""

    exclude_genres: list[Annotated[str, Field(min_length=1, max_length=100), AfterValidator(_clean)]] = \
        Field(default_factory=list, max_length=100, description="genres never to show (known genres only)")
    diversity: float = Field(default=0.0, ge=0.0, le=1.0, allow_inf_nan=False,
                             description="MMR λ: 0 relevance only, 1 diversity only")
    novelty: float = Field(default=0.0, ge=0.0, le=1.0, allow_inf_nan=False,
                           description="popularity penalty ν: 0 none, 1 strongest")
    similarity: Literal["genre", "embedding"] = Field(
        default="genre", description="what diversity compares: genre vectors or the model's item vectors")


class AddModelIn(Strict):
    path: Annotated[str, Field(min_length=1, max_length=4096, description="a saved model folder on the server"),
                    AfterValidator(_clean)]


class ActivateIn(Strict):
    force: bool = False


# ---- responses --------------------------------------------------------------------------------
class Row(BaseModel):
    model_config = ConfigDict(extra="allow")
    item: str
    label: str
    rank: int
    score: float | None
    title: str | None = None
    year: int | None = None
    genres: list[str] | None = None


class ItemListOut(BaseModel):
    model_config = ConfigDict(extra="allow")
    user: str | None = None
    item: dict[str, Any] | None = None
    score_kind: Literal["rating", "ranking", "similarity", "probability"]
    fallback: str | None
    fallback_reason: str | None = None
    model_version: int | None
    items: list[Row]


class BatchOut(BaseModel):
    model_version: int | None
    results: list[ItemListOut]


class EventsOut(BaseModel):
    user: str
    stored: int
    duplicates: int
    applied_seq: int
    model_version: int | None


class NewUserOut(BaseModel):
    user: str
    stored: int
    recommendations: ItemListOut


class PreferencesOut(BaseModel):
    user: str
    exclude_genres: list[str]
    diversity: float
    novelty: float
    similarity: str
    stored: bool
    known_genres: list[str]


class ExplanationOut(BaseModel):
    model_config = ConfigDict(extra="allow")
    user: str
    item: dict[str, Any]
    score: float
    score_kind: str
    exact: bool
    parts: list[dict[str, Any]]
    because: list[str]


class DeletedOut(BaseModel):
    user: str
    removed_events: int


class ItemOut(BaseModel):
    model_config = ConfigDict(extra="allow")
    item: str
    label: str
    in_model: bool


class ItemPutOut(BaseModel):
    item: str
    created: bool
    in_model: bool


class VersionOut(BaseModel):
    version: int


class ActivateOut(BaseModel):
    version: int
    previous: int | None
    warning: str | None


class VersionsOut(BaseModel):
    active: int | None
    versions: list[dict[str, Any]]


class Health(BaseModel):
    status: str


class Ready(BaseModel):
    ready: bool
    model_version: int | None
    applied_seq: int


class Detail(BaseModel):
    detail: Any


# ---- A/B experiments (recstack.ab) ------------------------------------------------------------
class RerankIn(Strict):
    diversity: float = Field(default=0.0, ge=0.0, le=1.0, description="MMR λ: 0 relevance only, 1 diversity only")
    novelty: float = Field(default=0.0, ge=0.0, le=100.0, description="popularity penalty ν")
    exclude_genres: list[Annotated[str, Field(min_length=1, max_length=100), AfterValidator(_clean)]] = \
        Field(default_factory=list, max_length=100)
    similarity: Literal["genre", "embedding"] = "genre"


class VariantIn(Strict):
    name: Annotated[str, Field(min_length=1, max_length=100), AfterValidator(_clean)]
    share: float = Field(gt=0.0, le=1.0, description="traffic share; the shares sum to at most 1")
    model_version: int | None = Field(default=None, ge=1, description="registered version (None: the active one)")
    rerank: RerankIn | None = None


class ExperimentIn(Strict):
    name: Annotated[str, Field(min_length=1, max_length=200), AfterValidator(_clean)]
    variants: list[VariantIn] = Field(min_length=2, max_length=20, description="the first is the control")
    metric: str = Field(default="ctr", max_length=100, description="ctr, mean_rating or conversion:<event type>")
    window_hours: float = Field(default=24.0, gt=0.0, le=8760.0, description="outcome window after an exposure")
    planned_users: int = Field(ge=1, le=10**9, description="users per variant before a verdict (`recstack ab plan`)")
    salt: Annotated[str, Field(min_length=1, max_length=100), AfterValidator(_clean)] | None = None


class ForceIn(Strict):
    user: Id
    variant: Annotated[str, Field(min_length=1, max_length=100)] | None = Field(
        default=None, description="the variant to force; null removes the forcing")


class ExperimentOut(BaseModel):
    model_config = ConfigDict(extra="allow")
    id: int
    name: str
    status: Literal["draft", "running", "stopped"]


class ExperimentsOut(BaseModel):
    experiments: list[ExperimentOut]


class VariantReport(BaseModel):
    model_config = ConfigDict(extra="allow")
    name: str
    users: int
    exposures: int
    mean: float | None
    ci: list[float | None]


class ReportOut(BaseModel):
    model_config = ConfigDict(extra="allow")
    variants: list[VariantReport]
    lift: dict[str, Any]
    verdict: str
    srm: dict[str, Any]
