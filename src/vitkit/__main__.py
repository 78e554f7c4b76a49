from vitkit.cli import main

raise SystemExit(main())
