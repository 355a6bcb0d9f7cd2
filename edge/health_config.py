"""Settings of camera health checks (kept apart from edge/health.py so the node config can import them)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class HealthConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(default=True, description="Watch this camera's picture for faults.")
    fault_seconds: float = Field(default=30.0, gt=0, description="How long a fault lasts before it is raised "
                                                                  "(and how long recovery lasts before it ends).")
    black_level: float = Field(default=12.0, ge=0, le=255, description="Mean brightness below which it is black.")
    covered_detail: float = Field(
        default=8.0, ge=0,
        description="Picture detail (variance of the Laplacian, on a small grey copy) below which the lens is "
                    "covered or fogged.",
    )
    moved_similarity: float = Field(
        default=0.35, ge=0, le=1,
        description="Share of the calibrated view's edges still found; below it the camera has been turned.",
    )
