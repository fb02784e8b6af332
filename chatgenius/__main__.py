"""`python -m chatgenius ...`: the `chatgenius-realtime` command without installing the package."""

from .cli import main

raise SystemExit(main())
