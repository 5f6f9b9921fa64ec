"""The command line (``python -m simclr_lib``): the commands, the quickstart and its time budget.

* :mod:`.commands` -- ``pretrain``, ``linear-eval``, ``knn``, ``embed``, ``quickstart``: flags, one-line errors
* :mod:`.quickstart` -- pre-train, probe against random init and t-SNE, inside a time budget
* :mod:`.interrupts` -- Ctrl-C and SIGTERM end a command the same way, in one line that says what was kept
"""
