"""foleyflow: sound for pictures.

Generates synchronized stereo soundtracks for videos (and audio from text) with an MMAudio-style multimodal
flow-matching transformer. Importing this package loads only the standard library, numpy and torch; heavier
dependencies (PyAV, soundfile, sentence-transformers, pymunk...) load inside the functions that use them.
"""
from foleyflow.errors import FoleyError

__version__ = "0.1.0.dev0"
__all__ = ["FoleyError", "__version__"]
