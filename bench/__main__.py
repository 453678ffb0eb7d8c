"""``python -m bench``: every benchmark of the project."""

from bench import policy

raise SystemExit(policy.main())
