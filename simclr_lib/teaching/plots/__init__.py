"""Every figure and table of the package and its notebooks, in one place.

Each plot makes its Figure with :func:`figure` (constrained layout, no pyplot global state, safe under the Agg
backend, shown once in Jupyter; nothing calls ``plt.show``) or draws into the ``ax=`` it is given, and returns the
Figure; :func:`save_figure` writes one atomically. Each table is :func:`markdown_table`. The numbers they show
are computed elsewhere (:mod:`simclr_lib.embed`, :mod:`simclr_lib.teaching.experiments`, :mod:`simclr_lib.evaluate`).

* :mod:`.core` -- :func:`figure`, :func:`markdown_table`, :func:`label`, :func:`save_figure`, conversions
* :mod:`.views` -- notebooks 01-02: image grids, rows of views, the similarity matrix and its masks, softmax
* :mod:`.training` -- notebooks 03-04: training history, curves, LR schedules, trust ratios, label fractions
* :mod:`.embeddings` -- notebook 05: class-coloured maps, thumbnails, nearest-neighbour grids
* :mod:`.grids` -- notebook 06: experiments as bars over seeds beside the random-init floor
* :mod:`.pipeline` -- notebook 00: the paper's Fig. 2 pipeline, with the notebook that teaches each box
* :mod:`.geometry` -- alignment and uniformity (Wang & Isola 2020): similarity histograms, the align/uniform plane
"""
from simclr_lib.teaching.plots.core import (OP_NAMES, figure, figure_format, label, markdown_table, save_figure, to_hwc,
                                            to_numpy)
from simclr_lib.teaching.plots.embeddings import neighbour_grid, scatter_by_class, side_by_side, thumbnail_scatter
from simclr_lib.teaching.plots.geometry import similarity_histograms
from simclr_lib.teaching.plots.grids import SCORE_NAMES, effect_bars, summarize
from simclr_lib.teaching.plots.pipeline import pipeline_diagram
from simclr_lib.teaching.plots.training import (compare_runs, confusion_matrix, plot_curves, plot_history,
                                                plot_label_fractions, plot_schedules, plot_trust_ratios)
from simclr_lib.teaching.plots.views import (histogram_overlay, image_grid, mask_panels, positive_mask_matrix,
                                             similarity_heatmap, softmax_vs_temperature, view_rows)

__all__ = ["OP_NAMES", "figure", "figure_format", "label", "markdown_table", "save_figure", "to_hwc", "to_numpy",
           "neighbour_grid", "scatter_by_class", "side_by_side", "thumbnail_scatter",
           "similarity_histograms", "pipeline_diagram",
           "SCORE_NAMES", "effect_bars", "summarize",
           "compare_runs", "confusion_matrix", "plot_curves", "plot_history", "plot_label_fractions", "plot_schedules",
           "plot_trust_ratios",
           "histogram_overlay", "image_grid", "mask_panels", "positive_mask_matrix", "similarity_heatmap",
           "softmax_vs_temperature", "view_rows"]
