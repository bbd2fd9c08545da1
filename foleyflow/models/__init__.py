"""Models: each file holds a Config dataclass, the Module and its presets (generator = MMAudio-style MM-DiT)."""
