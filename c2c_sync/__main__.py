"""`python -m c2c_sync ...` runs the same CLI as the installed `c2c-sync` script."""

from c2c_sync.cli import main

main()
