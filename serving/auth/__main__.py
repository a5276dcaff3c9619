from serving.auth.cli import main

raise SystemExit(main())
