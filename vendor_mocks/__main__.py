"""`python -m vendor_mocks fusionsolar|solaredge [--port ...]`: serve one vendor mock until SIGTERM."""

from vendor_mocks.servers import main

raise SystemExit(main())
