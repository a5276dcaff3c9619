from serving.server import main

raise SystemExit(main())
