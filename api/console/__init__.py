"""The reviewers' web console: server-rendered pages over the same store."""
