from ser.cli import main

raise SystemExit(main())
