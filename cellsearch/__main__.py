"""``python -m cellsearch``: the ``cellsearch`` command without the installed script."""

from cellsearch._cli import main

main()
