"""What the notebooks use to teach, beside the paper's components: import the sub-modules directly.

* :mod:`.notebook` -- the scale switch, data with an offline fallback, the series' run (every notebook's set-up)
* :mod:`.exercises` -- the checkers of the learner's exercises (each names the near-misses it catches)
* :mod:`.learner` -- notebook 03: the learner's augmentation, loss and step kept, collected and trained by
  a 30-line loop planned in time
* :mod:`.plots` -- every figure of the series
* :mod:`.experiments` -- notebook 06: settings x seeds on a validation split, beside the random-init floor
* :mod:`.finetune` -- notebook 04: fine-tuning and supervised training from scratch
* :mod:`.geometry` -- notebook 05: alignment and uniformity (Wang & Isola 2020)
* :mod:`.shortcut` -- notebook 01: the colour-histogram shortcut that colour distortion removes
* :mod:`.popular_repos` -- notebook 02: the loss and LARS of two popular repositories, with their bugs
* :mod:`.widgets` -- notebooks 01, 02 and 06: sliders that redraw a figure, a form that launches a run (ipywidgets)
"""
