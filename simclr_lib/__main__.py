"""``python -m simclr_lib {pretrain,linear-eval,knn,embed,quickstart} --help``: the commands live in :mod:`simclr_lib.cli`."""
import sys

from simclr_lib.cli.commands import main

if __name__ == "__main__":
    sys.exit(main())
