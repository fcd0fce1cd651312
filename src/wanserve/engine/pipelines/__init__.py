"""Model-family pipelines: one self-contained file per family, with an explicit denoising loop."""

from wanserve.engine.pipelines.wan import CfgGroup, WanComponents, WanVideoPipeline

__all__ = ["CfgGroup", "WanComponents", "WanVideoPipeline"]
