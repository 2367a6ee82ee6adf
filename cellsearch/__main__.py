"""``python -m cellsearch``: the ``cellsearch`` command without the installed script."""

from cellsearch._cli import main

if __name__ == "__main__":
    main()
