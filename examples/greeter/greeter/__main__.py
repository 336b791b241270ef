"""`python -m greeter`: serve until drained (see greeter.serve)."""

from greeter.serve import main

raise SystemExit(main())
