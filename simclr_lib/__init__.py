"""simclr_lib: SimCLR (Chen et al. 2020), step by step — a small, fast, tested library behind the notebooks."""
import warnings

__version__ = "0.2.0"

# Progress bars come from tqdm.auto; without ipywidgets (nbconvert, a plain kernel) it falls back to text bars and
# warns once, with the local path of its install. The fallback is what we want there: no warning.
warnings.filterwarnings("ignore", message="IProgress not found")

from simclr_lib.config import SimCLRConfig  # noqa: E402,F401
from simclr_lib.runs.registry import pretrained  # noqa: E402,F401  (the function shadows the module name)
