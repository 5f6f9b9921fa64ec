"""simclr_lib: SimCLR (Chen et al. 2020), step by step — a small, fast, tested library behind the notebooks."""
__version__ = "0.2.0"

from .config import SimCLRConfig  # noqa: E402,F401
