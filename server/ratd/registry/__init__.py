"""The model registry: what each model can do, what it costs and which parameters it
takes — a versioned seed file shipped with ratd, layered under live data from the
providers, cached on disk so that a restart without network still knows it all."""

from ratd.registry.presets import Preset, Presets, parse_preset
from ratd.registry.store import Registry, cost_at

__all__ = ["Preset", "Presets", "Registry", "cost_at", "parse_preset"]
